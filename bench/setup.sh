# Sourced by the CPU benchmarks (bench/run.sh, bench/imagenet_cpu.sh) from the repository root:
# PyTorch from PyPI into bench/.venv on first use, a release rbl-bench, THREADS threads (default
# 2) for every library, bench/results/, and $machine: one line naming the CPU and torch version.
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c 'import torch' 2>/dev/null; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet --progress-bar off torch numpy
fi
cargo build --release --quiet --bin rbl-bench
threads=${THREADS:-2}
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads RAYON_NUM_THREADS=$threads
mkdir -p bench/results
machine="machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); torch $(bench/.venv/bin/python -c 'import torch; print(torch.__version__)')"
