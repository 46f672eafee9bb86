"""How long a refit should train: test accuracy along each refit, at 2 images per class.

At 2 images per class a selection run takes one optimizer step an epoch, so
``max_epochs="auto"`` gives it 400 epochs; its refit, on the 200 validation
images as well, takes 7 steps an epoch (batches of 32). A refit of the
selection run's best number of epochs can thus train up to 2,800 steps, and
most of a default fit's time goes there. This script fits the defaults with
``max_epochs=400`` (the same selection runs as ``"auto"`` here, and a refit
that trains all of the selection run's best epochs) and scores the refit's
weights on the test data after every epoch listed in ``CAPS`` (through
``on_epoch``). Since a refit has no validation data, no early stopping and a
constant learning rate, a refit capped at ``c`` epochs is the first ``c``
epochs of this one: each row gives the test accuracy of the returned model
under every cap at once, and the cost of each (its share of the refit's
epochs).

Nets: the zoo's conv4 and conv7, and the two nets of a user's own of
``benchmarks/cost.py`` (their weights cached in its ``--cache``); shifts blur,
rotation, noise and invert; seeds 0, 1 and 2 (the training subset and every
run's seed); strategies flex, fast and ft-all; one torch thread.

    python benchmarks/refit_length.py run --out refit-length.csv          # resumable
    python benchmarks/refit_length.py summary refit-length.csv

The refit's check (a refit below the selection run's model on the data it
trained on is replaced by that model) is applied to none of them:
``full_test`` is the full refit's own accuracy, ``returned_test`` the returned
model's, and ``refit_fell_back`` says whether the check replaced the refit.
"""

import argparse
import copy
import csv
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cost import DEFAULT_CACHE, own_net  # noqa: E402

from flexsk import FlexTuner  # noqa: E402
from flexsk.bench import resumable_csv  # noqa: E402
from flexsk.datasets import make_digits_shift, train_val_test_split  # noqa: E402
from flexsk.zoo import load_source_net  # noqa: E402

#: The refit lengths (epochs) scored; "full" is the selection run's best epoch.
CAPS = (25, 50, 100, 150, 200, 300)
KEY = ["net", "shift", "seed", "strategy"]
COLUMNS = KEY + ["selected", "best_epoch", "refit_epochs", "refit_steps_per_epoch",
                 "selection_seconds", "refit_seconds", "refit_fell_back", "selection_test",
                 "returned_test", "full_test"] + [f"test_{cap}" for cap in CAPS]


class RefitScores:
    """on_epoch: the refit's test accuracy after each epoch of ``CAPS``, and its last."""

    def __init__(self, X_test, y_test):
        self.X, self.y = torch.as_tensor(X_test), y_test
        self.scores, self.steps_per_epoch, self.last, self.final = {}, None, None, None

    def __call__(self, record):
        if not record.refit or record.epoch == 0:
            return
        if record.epoch == 1:
            self.steps_per_epoch = record.n_steps
        self.last = record.epoch
        if record.epoch in CAPS:
            self.scores[record.epoch] = self.accuracy(record.module)
        self.final = record.module

    def accuracy(self, module):
        module = copy.deepcopy(module).eval()
        with torch.no_grad():
            return float(np.mean(module(self.X).argmax(1).numpy() == self.y))


def run(args):
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    with resumable_csv(args.out, COLUMNS, KEY) as (done, write):
        for net_name in args.nets:
            net = (load_source_net(net_name, image_size=16) if net_name in ("conv4", "conv7")
                   else own_net(net_name, args.cache))
            for shift in args.shifts:
                target = make_digits_shift(shift, image_size=16, random_state=0)
                for seed in args.seeds:
                    X, y, X_val, y_val, X_test, y_test = train_val_test_split(
                        target, 2, random_state=seed)
                    for strategy in args.strategies:
                        if (net_name, shift, str(seed), strategy) in done:
                            continue
                        scores = RefitScores(X_test, y_test)
                        tuner = FlexTuner(net, strategy=strategy, max_epochs=400,
                                          random_state=seed, keep_candidates=True,
                                          on_epoch=scores)
                        tuner.fit(X, y, X_val=X_val, y_val=y_val)
                        pick = tuner.selected_unit_
                        best = tuner.best_epochs_[pick]
                        returned = float(np.mean(tuner.predict(X_test) == y_test))
                        full = returned  # no refit trained (the pick peaked at epoch 0)
                        if scores.last is not None:  # the full refit, and each cap's
                            full = scores.accuracy(scores.final)
                        capped = {cap: scores.scores.get(cap, full) for cap in CAPS}
                        write(dict(
                            net=net_name, shift=shift, seed=seed, strategy=strategy,
                            selected="+".join(pick) if isinstance(pick, tuple) else pick,
                            best_epoch=best, refit_epochs=scores.last or 0,
                            refit_steps_per_epoch=scores.steps_per_epoch or "",
                            selection_seconds=round(tuner.fit_time_ - tuner.refit_time_, 2),
                            refit_seconds=round(tuner.refit_time_, 2),
                            refit_fell_back=tuner.refit_epochs_ is None,
                            selection_test=round(tuner.score_candidates(X_test, y_test)[pick], 4),
                            returned_test=round(returned, 4), full_test=round(full, 4),
                            **{f"test_{cap}": round(capped[cap], 4) for cap in CAPS}))
                        print(net_name, shift, seed, strategy, pick, best, round(full, 3),
                              flush=True)


def summary(args):
    with open(args.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    print(f"{len(rows)} fits. Mean test accuracy of the refit, and its epochs relative to "
          f"the full refit's, by refit cap (epochs):\n")
    print("| cap | mean test accuracy | Δ vs full (points) | better / worse than full "
          "| refit epochs (share of full) |")
    print("|---|---|---|---|---|")
    full = [float(r["full_test"]) for r in rows]
    epochs = [int(r["refit_epochs"]) for r in rows]
    for cap in CAPS:
        capped = [float(r[f"test_{cap}"]) for r in rows]
        diff = np.subtract(capped, full)
        share = sum(min(e, cap) for e in epochs) / max(sum(epochs), 1)
        print(f"| {cap} | {np.mean(capped):.4f} | {100 * diff.mean():+.2f} | "
              f"{(diff > 0).sum()} / {(diff < 0).sum()} | {share:.2f} |")
    print(f"| full | {np.mean(full):.4f} | +0.00 | - | 1.00 |")
    print(f"\nselection run's pick (no refit): "
          f"{statistics.mean(float(r['selection_test']) for r in rows):.4f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--nets", nargs="+", default=["conv4", "conv7", "plaincnn", "resbn"])
    p.add_argument("--shifts", nargs="+", default=["blur", "rotation", "noise", "invert"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--strategies", nargs="+", default=["flex", "fast", "ft-all"])
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p = sub.add_parser("summary")
    p.add_argument("csv", type=Path)
    args = parser.parse_args(argv)
    run(args) if args.command == "run" else summary(args)


if __name__ == "__main__":
    main()
