# Sourced by the CPU benchmarks (bench/run.sh, bench/imagenet_cpu.sh) from the repository root:
# PyTorch from PyPI into bench/.venv on first use, a release rbl-bench, THREADS threads (default
# 2) for every library, bench/results/, and $machine: one line naming the CPU, its feature level
# and the torch version.
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c 'import torch' 2>/dev/null; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet --progress-bar off torch numpy
fi
cargo build --release --quiet --bin rbl-bench
threads=${THREADS:-2}
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads RAYON_NUM_THREADS=$threads
mkdir -p bench/results
# The CPU's feature level: rbl's kernels run AVX-512 where the CPU has it, AVX2 + FMA elsewhere
# (RBL_CPU_LEVEL=avx2 makes an AVX-512 CPU a stand-in for an AVX2-only one), and bf16/AMX are
# what PyTorch's bf16 autocast uses through oneDNN.
flags=$(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2)
level=""
for f in avx512f avx2 fma avx512_bf16 amx_bf16; do
  case " $flags " in *" $f "*) level="$level $f" ;; esac
done
# The AVX2 stand-in caps PyTorch too: ATen's kernels (ATEN_CPU_CAPABILITY) and oneDNN's
# convolutions (ONEDNN_MAX_CPU_ISA), so both sides run as on an AVX2-only CPU.
if [ "${RBL_CPU_LEVEL:-}" = avx2 ]; then
  export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
fi
level="features:${level:- none of avx512f avx2 fma avx512_bf16 amx_bf16}${RBL_CPU_LEVEL:+, kernels capped at RBL_CPU_LEVEL=$RBL_CPU_LEVEL}${ATEN_CPU_CAPABILITY:+ (PyTorch: ATEN_CPU_CAPABILITY=$ATEN_CPU_CAPABILITY ONEDNN_MAX_CPU_ISA=$ONEDNN_MAX_CPU_ISA)}"
machine="machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $level; torch $(bench/.venv/bin/python -c 'import torch; print(torch.__version__)')"
