"""What a default fit costs, side by side with another version of flexsk.

Fits ``FlexTuner(net, strategy=..., random_state=seed)`` with every other
setting at its default, on the bench's fixed validation set (200 images) and
a few training images per class, and records each fit's seconds (``fit_time_``
and ``refit_time_``) and test accuracies (the returned model's, and the
selection run's pick's). Only public API is used, so the same script measures
any checkout: the ``PYTHONPATH`` of the process decides which flexsk it
imports.

Nets: the zoo's ``conv4`` and ``conv7``, and two nets of a user's own defined
here (``plaincnn``, a plain CNN; ``resbn``, a residual net with BatchNorm),
pretrained once on the source digits and kept in ``--cache`` so that every
version tunes the same weights.

Commands::

    # one version's fits, one torch thread, appended to a CSV (resumable)
    python benchmarks/cost.py run --out new.csv
    # two checkouts side by side: each scenario in both, at the same time, one
    # process per checkout and one torch thread each (alternating the order)
    python benchmarks/cost.py pair OLD_CHECKOUT NEW_CHECKOUT --out cost-pair
    # ratios (medians over the paired fits) and mean accuracies
    python benchmarks/cost.py compare cost-pair/old.csv cost-pair/new.csv

``--nets``, ``--shifts``, ``--ratios``, ``--strategies`` and ``--seeds`` narrow
the grid (defaults: the four nets, blur, ratios 2 10 40, flex fast ft-all
ft-fc, seeds 0 1 2; ``--strategies`` also takes ``halving``, the recipes,
and the variants their defaults were chosen among).
"""

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from collections import OrderedDict, defaultdict
from pathlib import Path

COLUMNS = ["net", "shift", "ratio", "seed", "strategy", "fit_seconds", "refit_seconds",
           "selected", "test_accuracy", "selection_test_accuracy"]
NETS = ("conv4", "conv7", "plaincnn", "resbn")
STRATEGIES = OrderedDict([("flex", dict(strategy="flex")), ("fast", dict(strategy="fast")),
                          ("ft-all", dict(strategy="ft-all")),
                          ("ft-fc", dict(strategy="ft-fc", n_fc_units=1)),
                          ("halving", dict(strategy="halving")),
                          ("auto-rgn", dict(strategy="auto-rgn")),
                          ("lp-ft", dict(strategy="lp-ft")),
                          ("llrd", dict(strategy="llrd")),
                          # variants the recipes' defaults were chosen among
                          ("llrd-0.65", dict(strategy="llrd", layer_decay=0.65)),
                          ("llrd-0.85", dict(strategy="llrd", layer_decay=0.85)),
                          ("lp-ft-0.1", dict(strategy="lp-ft-0.1")),
                          ("flex+recipes", dict(strategy="flex", candidates=(
                              "units", "all", "lp-ft", "llrd", "auto-rgn")))])
DEFAULT_STRATEGIES = ["flex", "fast", "ft-all", "ft-fc"]
DEFAULT_CACHE = Path.home() / ".cache" / "flexsk-cost"


def own_net(name, cache):
    """A user's net, pretrained on the source digits once and cached (same weights for
    every checkout measured)."""
    import torch

    from flexsk.datasets import load_digits_source
    from user_nets import source_net

    path = Path(cache) / f"{name}.pt"
    if path.exists():
        return source_net(name, state_dict=torch.load(path))
    net = source_net(name, *load_digits_source(split="train", image_size=16, return_X_y=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.module_.state_dict(), path)
    return net


def lp_ft_slower(ctx):
    """LP-FT whose second stage trains at a tenth of the learning rate."""
    from flexsk.strategies import Outcome

    head = ctx.units[-1].name
    probe = ctx.tune(head)
    tenth = dict.fromkeys((name for name, _ in ctx.pretrained.named_parameters()), 0.1)
    return Outcome("lp-ft", {head: probe,
                             "lp-ft": ctx.tune("all", start=probe, lr_scales=tenth,
                                               name="lp-ft")})


def _strategy(params):
    """FlexTuner parameters, the benchmark's own strategies made records."""
    if params["strategy"] == "lp-ft-0.1":
        from flexsk.strategies import Strategy

        return dict(params, strategy=Strategy("lp-ft-0.1", lp_ft_slower))
    return params


def scenarios(args):
    for net in args.nets:
        for shift in args.shifts:
            for ratio in args.ratios:
                for seed in args.seeds:
                    yield net, shift, ratio, seed


def run(args):
    """Fit every scenario x strategy with this process's flexsk; append CSV rows."""
    import warnings

    import numpy as np
    import torch

    from flexsk import FlexTuner
    from flexsk.datasets import make_digits_shift, train_val_test_split
    from flexsk.zoo import load_source_net

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    out = Path(args.out)
    done = set()
    if out.exists():
        with open(out, newline="") as f:
            done = {tuple(r[c] for c in COLUMNS[:5]) for r in csv.DictReader(f)}
    new = not out.exists()
    with open(out, "a", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        if new:
            writer.writeheader()
        for net_name, shift, ratio, seed in scenarios(args):
            net = (own_net(net_name, args.cache) if net_name not in ("conv4", "conv7")
                   else load_source_net(net_name, image_size=16))
            target = make_digits_shift(shift, image_size=16, random_state=0)
            X, y, X_val, y_val, X_test, y_test = train_val_test_split(target, ratio,
                                                                      random_state=seed)
            for label in args.strategies:
                key = (net_name, shift, str(ratio), str(seed), label)
                if key in done:
                    continue
                tuner = FlexTuner(net, keep_candidates=True, random_state=seed,
                                  **_strategy(STRATEGIES[label]))
                tuner.fit(X, y, X_val=X_val, y_val=y_val)
                pick = tuner.score_candidates(X_test, y_test)[tuner.selected_unit_]
                writer.writerow(dict(
                    net=net_name, shift=shift, ratio=ratio, seed=seed, strategy=label,
                    fit_seconds=round(tuner.fit_time_, 3),
                    refit_seconds=round(tuner.refit_time_, 3),
                    selected="+".join(tuner.selected_unit_) if isinstance(
                        tuner.selected_unit_, tuple) else tuner.selected_unit_,
                    test_accuracy=round(float(np.mean(tuner.predict(X_test) == y_test)), 4),
                    selection_test_accuracy=round(pick, 4)))
                f.flush()


def pair(args):
    """Each scenario in both checkouts at once (one process each, one thread each),
    the order of the two starts alternating; rows to OUT/a.csv and OUT/b.csv."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [args.a_name, args.b_name]
    grid = ["--strategies", *args.strategies, "--cache", str(args.cache)]
    for i, (net, shift, ratio, seed) in enumerate(scenarios(args)):
        one = ["--nets", net, "--shifts", shift, "--ratios", str(ratio), "--seeds", str(seed)]
        jobs = []
        order = [(args.a, names[0]), (args.b, names[1])]
        for checkout, name in (order if i % 2 == 0 else order[::-1]):
            env = dict(os.environ, PYTHONPATH=str(Path(checkout).resolve()),
                       OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
            jobs.append(subprocess.Popen(
                [sys.executable, __file__, "run", "--out", str(out / f"{name}.csv"),
                 *one, *grid], env=env))
        for job in jobs:
            if job.wait():
                sys.exit(f"a run failed ({job.args})")
        print(f"{net} {shift} {ratio} {seed}: done ({time.strftime('%H:%M:%S')})", flush=True)


def read(path):
    with open(path, newline="") as f:
        return {tuple(r[c] for c in COLUMNS[:5]): r for r in csv.DictReader(f)}


def compare(args):
    """Per (strategy, ratio): median of per-fit time ratios B/A, ratio of summed times,
    mean test accuracies (returned model, selection run's pick)."""
    a, b = read(args.a_csv), read(args.b_csv)
    common = [k for k in a if k in b]
    groups = defaultdict(list)
    for key in common:
        groups[(key[4], int(key[2]))].append(key)
        groups[(key[4], "all")].append(key)
        groups[("all", int(key[2]))].append(key)
        groups[("all", "all")].append(key)
    print(f"{len(common)} fits in both. B/A: {args.b_csv} over {args.a_csv}\n")
    print("| strategy | ratio | fits | median time ratio | total time ratio | A acc | B acc "
          "| A pick acc | B pick acc |")
    print("|---|---|---|---|---|---|---|---|---|")

    def order(group):
        strategy, ratio = group
        position = list(STRATEGIES) + ["all"]
        return (position.index(strategy) if strategy in position else 99,
                ratio if ratio != "all" else 1e9)

    for group in sorted(groups, key=order):
        keys = groups[group]
        ta = [float(a[k]["fit_seconds"]) for k in keys]
        tb = [float(b[k]["fit_seconds"]) for k in keys]
        ratios = [y / x for x, y in zip(ta, tb) if x > 0]

        def mean(rows, column):
            return statistics.mean(float(rows[k][column]) for k in keys)

        print(f"| {group[0]} | {group[1]} | {len(keys)} | {statistics.median(ratios):.2f} | "
              f"{sum(tb) / sum(ta):.2f} | {mean(a, 'test_accuracy'):.4f} | "
              f"{mean(b, 'test_accuracy'):.4f} | {mean(a, 'selection_test_accuracy'):.4f} | "
              f"{mean(b, 'selection_test_accuracy'):.4f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def grid(p):
        p.add_argument("--nets", nargs="+", default=list(NETS))
        p.add_argument("--shifts", nargs="+", default=["blur"])
        p.add_argument("--ratios", nargs="+", type=int, default=[2, 10, 40])
        p.add_argument("--strategies", nargs="+", default=DEFAULT_STRATEGIES,
                       choices=list(STRATEGIES))
        p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
        p.add_argument("--cache", default=str(DEFAULT_CACHE),
                       help="where the nets of a user's own are kept once pretrained")

    p = sub.add_parser("run")
    p.add_argument("--out", required=True)
    grid(p)
    p = sub.add_parser("pair")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--a-name", default="a")
    p.add_argument("--b-name", default="b")
    p.add_argument("--out", required=True)
    grid(p)
    p = sub.add_parser("compare")
    p.add_argument("a_csv")
    p.add_argument("b_csv")
    args = parser.parse_args(argv)
    {"run": run, "pair": pair, "compare": compare}[args.command](args)


if __name__ == "__main__":
    main()
