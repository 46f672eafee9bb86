"""Selection by the metric a user cares about: FlexTuner's ``scoring``, measured.

Two studies, each against the default (``scoring=None``, validation accuracy):

``imbalanced``
    An imbalanced target: the training images of each class (from the
    target's training and validation pools, 60 per class) fall geometrically
    from 50 to 5 (10:1 between the most and least frequent class; which
    digit is rare changes with the seed). FlexTuner holds out its own
    stratified validation split (as imbalanced). The test set is the
    target's balanced test part (34 per class). Each fit is scored by the
    balanced accuracy of the returned model on the test set, with
    ``scoring=None`` and ``scoring="balanced_accuracy"``, for ``fast`` (the
    default strategy) and ``flex``.

``retrieval``
    The bench's retrieval protocol (Table 4): flex with the bench's training
    set, validation and test parts; each candidate's test mAP@10 against the
    source gallery (``score_candidates`` with the retrieval scorer), the
    returned model's, and the regret of the pick (the best candidate's test
    mAP@10 minus the pick's), selecting by accuracy and by mAP@10
    (``scoring=make_retrieval_scorer(...)``).

    python benchmarks/scoring.py imbalanced --out scoring-imbalanced.csv   # about 20 minutes
    python benchmarks/scoring.py retrieval --out scoring-retrieval.csv     # about 50 minutes
    python benchmarks/scoring.py summary scoring-imbalanced.csv scoring-retrieval.csv

(one process; the retrieval study's fits take about 10 minutes on conv4 and
35 on conv7). The committed ``scoring-retrieval.csv`` holds conv4's 60 rows
and the first 9 of conv7's; the same command resumes it.

Estimator defaults, one torch thread; runs append to the CSV and a rerun
resumes. Nothing is asserted.
"""

import argparse
import csv
import statistics
import time
import warnings

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score

from flexsk import FlexTuner
from flexsk.bench import key_name, resumable_csv
from flexsk.datasets import (SHIFTS, load_digits_source, make_digits_shift,
                             train_val_test_split)
from flexsk.metrics import make_retrieval_scorer, map_at_k
from flexsk.zoo import load_source_net

IMAGE_SIZE = 16
SCORINGS = ("accuracy", "balanced_accuracy")  # "accuracy": scoring=None, the default
IMBALANCED = ["net", "shift", "seed", "strategy", "scoring", "cv", "n_train", "rare",
              "selected", "test_balanced_accuracy", "test_accuracy", "fit_seconds"]
RETRIEVAL = ["net", "shift", "ratio", "seed", "scoring", "selected", "pick_map", "best_map",
             "regret", "refit_map", "source_map", "test_accuracy", "fit_seconds"]


def imbalanced_subset(y, pool, seed, most=50, least=5):
    """Indices of ``pool`` with geometrically falling class counts (most to least)."""
    rng = np.random.RandomState(seed)
    classes = rng.permutation(np.unique(y[pool]))
    counts = np.round(np.geomspace(most, least, len(classes))).astype(int)
    chosen = [rng.choice(pool[y[pool] == c], n, replace=False)
              for c, n in zip(classes, counts)]
    return np.sort(np.concatenate(chosen)), classes[-1]


def _scenarios(args):
    """(net name, shift, its net, its target Bunch) for every net and shift asked for."""
    for net_name in args.nets:
        for shift in args.shifts:
            n_channels = 3 if shift in ("mnistm", "colorspace") else 1
            yield (net_name, shift,
                   load_source_net(net_name, image_size=IMAGE_SIZE, n_channels=n_channels),
                   make_digits_shift(shift, image_size=IMAGE_SIZE, n_channels=n_channels,
                                     random_state=0))


def _timed_fit(tuner, *data, **fit_params):
    """``tuner`` fitted on ``data`` with its warnings silenced, and the seconds it took."""
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuner.fit(*data, **fit_params)
    return tuner, time.perf_counter() - started


def imbalanced(args):
    key = ("net", "shift", "seed", "strategy", "scoring", "cv")
    cv = args.cv or ""
    with resumable_csv(args.out, IMBALANCED, key) as (done, write):
        for net_name, shift, net, bunch in _scenarios(args):
            X, y, split = bunch.data, bunch.target, bunch.split
            pool = np.flatnonzero(split != "test")
            test = np.flatnonzero(split == "test")
            for seed in args.seeds:
                rows, rare = imbalanced_subset(y, pool, seed)
                for strategy in args.strategies:
                    for scoring in SCORINGS:
                        if (net_name, shift, str(seed), strategy, scoring, str(cv)) in done:
                            continue
                        tuner, seconds = _timed_fit(FlexTuner(
                            net, strategy=strategy, random_state=seed, cv=args.cv,
                            scoring=None if scoring == "accuracy" else scoring), X[rows], y[rows])
                        predicted = tuner.predict(X[test])
                        write(dict(
                            net=net_name, shift=shift, seed=seed, strategy=strategy,
                            scoring=scoring, cv=cv, n_train=len(rows), rare=int(rare),
                            selected=key_name(tuner.selected_unit_),
                            test_balanced_accuracy=round(
                                balanced_accuracy_score(y[test], predicted), 4),
                            test_accuracy=round(float(np.mean(predicted == y[test])), 4),
                            fit_seconds=round(seconds, 2)))
                        print(net_name, shift, seed, strategy, scoring,
                              key_name(tuner.selected_unit_), f"{seconds:.1f}s", flush=True)


def retrieval(args):
    key = ("net", "shift", "ratio", "seed", "scoring")
    with resumable_csv(args.out, RETRIEVAL, key) as (done, write):
        for net_name, shift, net, bunch in _scenarios(args):
            X_source, y_source = load_digits_source(
                split="test", image_size=IMAGE_SIZE, n_channels=bunch.data.shape[1],
                return_X_y=True)
            scorer = make_retrieval_scorer(X_source, y_source, k=10)
            gallery = None
            for ratio in args.ratios:
                for seed in args.seeds:
                    X, y, X_val, y_val, X_test, y_test = train_val_test_split(
                        bunch, ratio, random_state=seed)
                    for scoring in ("accuracy", "map@10"):
                        if (net_name, shift, str(ratio), str(seed), scoring) in done:
                            continue
                        tuner, seconds = _timed_fit(FlexTuner(
                            net, strategy="flex", keep_candidates=True, random_state=seed,
                            scoring=None if scoring == "accuracy" else scorer),
                            X, y, X_val=X_val, y_val=y_val)
                        maps = tuner.score_candidates(X_test, y_test, scoring=scorer)
                        pick = maps[tuner.selected_unit_]
                        if gallery is None:
                            gallery = tuner.pretrained_transform(X_source)
                        write(dict(
                            net=net_name, shift=shift, ratio=ratio, seed=seed, scoring=scoring,
                            selected=key_name(tuner.selected_unit_), pick_map=round(pick, 4),
                            best_map=round(max(maps.values()), 4),
                            regret=round(max(maps.values()) - pick, 4),
                            refit_map=round(scorer(tuner, X_test, y_test), 4),
                            source_map=round(map_at_k(tuner.pretrained_transform(X_test), y_test,
                                                      gallery, y_source, k=10), 4),
                            test_accuracy=round(tuner.score(X_test, y_test), 4),
                            fit_seconds=round(seconds, 2)))
                        print(net_name, shift, ratio, seed, scoring,
                              key_name(tuner.selected_unit_), f"{seconds:.1f}s", flush=True)


def _mean(values):
    return statistics.fmean(values) if values else float("nan")


def summary(args):
    for path in args.files:
        rows = list(csv.DictReader(open(path)))
        if not rows:
            continue
        if "test_balanced_accuracy" in rows[0]:
            _summary_imbalanced(path, rows)
        else:
            _summary_retrieval(path, rows)


def _pairs(rows, key, scorings):
    by = {}
    for row in rows:
        by.setdefault(tuple(row[k] for k in key), {})[row["scoring"]] = row
    return [pair for pair in by.values() if all(s in pair for s in scorings)]


def _summary_imbalanced(path, rows):
    print(f"\n{path}: test balanced accuracy, scoring=None against "
          f"scoring='balanced_accuracy' (10:1 imbalanced training data, balanced test)\n")
    print("| strategy | net | fits | None | balanced_accuracy | difference | higher / lower / "
          "same | other pick |")
    print("|---|---|---|---|---|---|---|---|")
    for strategy, cv in sorted({(r["strategy"], r.get("cv", "")) for r in rows}):
        for net in sorted({r["net"] for r in rows}) + ["all"]:
            pairs = _pairs([r for r in rows if r["strategy"] == strategy
                            and r.get("cv", "") == cv and net in ("all", r["net"])],
                           ("net", "shift", "seed", "strategy"), SCORINGS)
            if not pairs:
                continue
            name = strategy if not cv else f"{strategy}, cv={cv}"
            base = [float(p["accuracy"]["test_balanced_accuracy"]) for p in pairs]
            new = [float(p["balanced_accuracy"]["test_balanced_accuracy"]) for p in pairs]
            diffs = [b - a for a, b in zip(base, new)]
            other = sum(p["accuracy"]["selected"] != p["balanced_accuracy"]["selected"]
                        for p in pairs)
            print(f"| {name} | {net} | {len(pairs)} | {_mean(base):.4f} | {_mean(new):.4f} "
                  f"| {_mean(diffs):+.4f} | {sum(d > 0 for d in diffs)} / "
                  f"{sum(d < 0 for d in diffs)} / {sum(d == 0 for d in diffs)} | {other} |")
    seeds = {}
    for row in rows:
        name = row["strategy"] if not row.get("cv") else f"{row['strategy']}, cv={row['cv']}"
        seeds.setdefault((name, row["seed"]), {}).setdefault(row["scoring"], []).append(
            float(row["test_balanced_accuracy"]))
    wins = {}
    for (strategy, seed), by in seeds.items():
        if all(s in by for s in SCORINGS) and len(by[SCORINGS[0]]) == len(by[SCORINGS[1]]):
            wins.setdefault(strategy, []).append(_mean(by[SCORINGS[1]]) > _mean(by[SCORINGS[0]]))
    print("\nSeeds in which balanced_accuracy's mean (over nets and shifts) is higher: "
          + ", ".join(f"{s} {sum(w)} of {len(w)}" for s, w in sorted(wins.items())))


def _summary_retrieval(path, rows):
    print(f"\n{path}: flex's test mAP@10, selecting by validation accuracy against "
          f"selecting by validation mAP@10 (Table 4 protocol)\n")
    print("| net | ratio | scenarios | source mAP | by accuracy: pick / refit / regret | "
          "by mAP@10: pick / refit / regret | other pick |")
    print("|---|---|---|---|---|---|---|")
    for net in sorted({r["net"] for r in rows}) + ["all"]:
        for ratio in sorted({int(r["ratio"]) for r in rows}, key=int) + ["all"]:
            pairs = _pairs([r for r in rows if net in ("all", r["net"])
                            and ratio in ("all", int(r["ratio"]))],
                           ("net", "shift", "ratio", "seed"), ("accuracy", "map@10"))
            if not pairs:
                continue

            def m(scoring, column):
                return _mean([float(p[scoring][column]) for p in pairs])
            other = sum(p["accuracy"]["selected"] != p["map@10"]["selected"] for p in pairs)
            print(f"| {net} | {ratio} | {len(pairs)} | {m('accuracy', 'source_map'):.3f} | "
                  f"{m('accuracy', 'pick_map'):.3f} / {m('accuracy', 'refit_map'):.3f} / "
                  f"{m('accuracy', 'regret'):.3f} | {m('map@10', 'pick_map'):.3f} / "
                  f"{m('map@10', 'refit_map'):.3f} / {m('map@10', 'regret'):.3f} | {other} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, default_strategies in (("imbalanced", ["fast", "flex"]), ("retrieval", None)):
        p = sub.add_parser(name)
        p.add_argument("--out", required=True)
        p.add_argument("--nets", nargs="+", default=["conv4", "conv7"])
        p.add_argument("--shifts", nargs="+", default=(
            ["blur", "rotation", "noise", "invert"] if name == "imbalanced" else list(SHIFTS)))
        p.add_argument("--seeds", nargs="+", type=int,
                       default=[0, 1, 2, 3, 4] if name == "imbalanced" else [0])
        if default_strategies:
            p.add_argument("--strategies", nargs="+", default=default_strategies)
            p.add_argument("--cv", type=int, default=None,
                           help="FlexTuner's cv (default: one validation split)")
        else:
            p.add_argument("--ratios", nargs="+", type=int, default=[2, 10, 40])
    p = sub.add_parser("summary")
    p.add_argument("files", nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"imbalanced": imbalanced, "retrieval": retrieval, "summary": summary}[args.command](args)


if __name__ == "__main__":
    main()
