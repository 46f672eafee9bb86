"""When ``n_jobs`` pays: flex with one job against two, on the machine at hand.

Each command is a fresh process, so its first parallel fit starts joblib's
worker processes; the second fit with the same ``n_jobs`` reuses them.
Every setting is the estimator's default; the zoo's conv4 (10 images per
class) and conv7 (2 per class) on the blur digits, with the bench's fixed
validation set.

    python benchmarks/bench_jobs.py           # about a minute

Prints a markdown table: wall seconds of the first and the second fit.
"""

import subprocess
import sys

SCENARIOS = (("conv4", 10), ("conv7", 2))

FIT = """
import time, warnings
warnings.simplefilter("ignore")
from flexsk import FlexTuner
from flexsk.datasets import make_digits_shift, train_val_test_split
from flexsk.zoo import load_source_net
net = load_source_net({arch!r}, image_size=16)
target = make_digits_shift("blur", image_size=16, random_state=0)
X, y, X_val, y_val, _, _ = train_val_test_split(target, {ratio}, random_state=0)
seconds = []
for _ in range(2):
    started = time.perf_counter()
    FlexTuner(net, strategy="flex", random_state=0, n_jobs={n_jobs}).fit(
        X, y, X_val=X_val, y_val=y_val)
    seconds.append(time.perf_counter() - started)
print(" ".join(f"{{s:.1f}}" for s in seconds))
"""


def main():
    import torch

    print(f"torch threads in a fresh process: {torch.get_num_threads()}\n")
    print("| net | images per class | n_jobs | first fit (s) | second fit (s) |")
    print("|---|---|---|---|---|")
    for arch, ratio in SCENARIOS:
        for n_jobs in (1, 2):
            out = subprocess.run([sys.executable, "-c", FIT.format(arch=arch, ratio=ratio,
                                                                   n_jobs=n_jobs)],
                                 capture_output=True, text=True, check=True).stdout.split()
            print(f"| {arch} | {ratio} | {n_jobs} | {out[0]} | {out[1]} |")


if __name__ == "__main__":
    main()
