"""How a healthy refit compares with the selection run's model on the data it trained on.

A refit trains the pick on the training and validation data together, so on
those data it should score at least about as well as the selection run's
model, which trained on part of them. This script fits the estimator's
defaults on a grid of the bench's scenarios and records, on the training and
validation data and on the test data, the accuracy of the pretrained net, of
the selection run's pick (``candidates_``) and of the refit as it came out of
training (captured through ``on_epoch``, before FlexTuner's own check), so
that the rule which tells a failed refit from a healthy one can be chosen,
and checked, on them.

    python benchmarks/refit_check.py --out refit-check.csv     # about 15 minutes
    python benchmarks/refit_check.py --summary refit-check.csv

One torch thread.
"""

import argparse
import copy
import csv
import statistics
import warnings

import numpy as np
import torch

from flexsk import FlexTuner
from flexsk.bench import resumable_csv
from flexsk.datasets import make_digits_shift, train_val_test_split
from flexsk.zoo import load_source_net

COLUMNS = ["net", "shift", "ratio", "seed", "strategy", "lr", "selected", "refit_epochs",
           "pretrained_seen", "pick_seen", "refit_seen", "pick_test", "refit_test"]
STRATEGIES = {"flex": dict(strategy="flex"), "ft-all": dict(strategy="ft-all"),
              "ft-fc": dict(strategy="ft-fc")}


class LastRefit:
    """on_epoch: the refit's weights after its last epoch."""

    def __init__(self):
        self.module = None

    def __call__(self, record):
        if record.refit and record.epoch > 0:
            self.module = copy.deepcopy(record.module)


def accuracy(module, X, y):
    with torch.no_grad():
        return float((module(torch.as_tensor(X)).argmax(1).numpy() == y).mean())


def run(args):
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    key = ("net", "shift", "ratio", "seed", "strategy", "lr")
    with resumable_csv(args.out, COLUMNS, key) as (done, write):
        for shift in args.shifts:
            channels = 3 if shift in ("mnistm", "colorspace") else 1
            target = make_digits_shift(shift, image_size=16, n_channels=channels,
                                       random_state=0)
            for net_name in args.nets:
                net = load_source_net(net_name, image_size=16, n_channels=channels)
                for ratio in args.ratios:
                    X, y, X_val, y_val, X_test, y_test = train_val_test_split(
                        target, ratio, random_state=args.seed)
                    seen_X, seen_y = np.concatenate([X, X_val]), np.concatenate([y, y_val])
                    for label in args.strategies:
                        for lr in args.lrs:
                            key = (net_name, shift, str(ratio), str(args.seed), label, str(lr))
                            if key in done:
                                continue
                            last = LastRefit()
                            tuner = FlexTuner(net, keep_candidates=True, lr=lr,
                                              random_state=args.seed, on_epoch=last,
                                              **STRATEGIES[label])
                            tuner.fit(X, y, X_val=X_val, y_val=y_val)
                            pick = tuner.candidates_[tuner.selected_unit_]
                            refit = last.module if last.module is not None else tuner.net_.module_
                            pretrained = net.module_.eval()
                            write(dict(
                                net=net_name, shift=shift, ratio=ratio, seed=args.seed,
                                strategy=label, lr=lr, selected=str(tuner.selected_unit_),
                                refit_epochs=tuner.refit_epochs_,
                                pretrained_seen=accuracy(pretrained, seen_X, seen_y),
                                pick_seen=accuracy(pick, seen_X, seen_y),
                                refit_seen=accuracy(refit, seen_X, seen_y),
                                pick_test=accuracy(pick, X_test, y_test),
                                refit_test=accuracy(refit, X_test, y_test)))


def summary(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    gaps = [float(r["pick_seen"]) - float(r["refit_seen"]) for r in rows]
    print(f"{len(rows)} fits. Pick minus refit accuracy on the data the refit trained on, "
          f"points: median {100 * statistics.median(gaps):+.2f}, max {100 * max(gaps):+.2f}")
    for margin in (0.0, 0.01, 0.02, 0.05, 0.1):
        failed = [r for r, g in zip(rows, gaps) if g > margin]
        test_gain = [float(r["pick_test"]) - float(r["refit_test"]) for r in failed]
        print(f"refit below the pick by more than {100 * margin:.0f} points: {len(failed)} fits"
              + (f"; falling back to the pick changes their test accuracy by "
                 f"{100 * np.mean(test_gain):+.2f} points on average "
                 f"(min {100 * min(test_gain):+.1f}, max {100 * max(test_gain):+.1f})"
                 if failed else ""))
    below = [r for r in rows if float(r["refit_seen"]) < float(r["pretrained_seen"])]
    print(f"refit below the pretrained net on those data: {len(below)} fits")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--summary", default=None)
    parser.add_argument("--nets", nargs="+", default=["conv4", "conv7"])
    parser.add_argument("--shifts", nargs="+", default=["blur", "rotation", "noise", "mnistm"])
    parser.add_argument("--ratios", nargs="+", type=int, default=[2, 10, 40])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--lrs", nargs="+", type=float, default=[1e-3, 1e-2])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.summary:
        summary(args.summary)
    else:
        run(args)


if __name__ == "__main__":
    main()
