"""rbl's TensorBoard event files read by TensorBoard's own loader (run by hand).

    pip install tensorboard
    python scripts/check_tensorboard.py RUN_DIR

Loads RUN_DIR/tensorboard with tensorboard's EventAccumulator (what `tensorboard --logdir`
uses, orphaned-data purge included), and checks every scalar against RUN_DIR/epochs.jsonl:
one point per epoch, at step = epoch, equal to the log's value in float32.
"""

import json
import sys

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TAGS = {
    "train/loss": "train_loss",
    "train/accuracy": "train_acc",
    "train/lr": "lr",
    "test/loss": "test_loss",
    "test/accuracy_raw": "test_acc",
    "test/accuracy_adjusted": "test_acc_adjusted",
    "rotation/orthogonality_error": "rotation_orthogonality_error",
}


def main(run):
    log = [json.loads(line) for line in open(f"{run}/epochs.jsonl")]
    acc = EventAccumulator(f"{run}/tensorboard", purge_orphaned_data=True)
    acc.Reload()
    tags = acc.Tags()["scalars"]
    checked = 0
    for tag, key in TAGS.items():
        want = [(r["epoch"], r[key]) for r in log if r.get(key) is not None]
        if not want:
            continue
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in want], (tag, got, want)
        for (_, g), (_, w) in zip(got, want):
            assert g == np.float32(w), (tag, g, w)
        checked += len(got)
    print(f"{run}: {len(tags)} scalar tags, {checked} points checked against epochs.jsonl "
          f"({len(log)} epochs) with tensorboard's EventAccumulator")


if __name__ == "__main__":
    main(sys.argv[1])
