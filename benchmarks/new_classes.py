"""New classes: a pretrained net tuned to labels it never had (``head="new"``).

Two tasks on the embedded digits, each under domain shifts:

* ``digits 5-9``: the source net is pretrained on digits 0-4 only
  (``load_source_net(arch, digits=[0, 1, 2, 3, 4])``); the target task is
  digits 5-9, labelled by name (``"five"``, ...);
* ``parity``: the source net knows all ten digits; the target labels are
  ``"even"`` and ``"odd"`` (a coarse relabelling).

Every scenario (task, net, shift, training images per digit) fits FlexTuner
with its defaults, except ``X_val`` (the target ``val`` split, so that every
method sees the same validation data) and ``keep_candidates=True`` (to score
each candidate on test data). ``head`` stays at its default ``"auto"``,
which gives these string labels a new head. Methods:

* flex, fast, faster, ft-fc (the new head alone: a linear probe), ft-all;
* ``logreg``: scikit-learn's ``LogisticRegression`` (standardized features,
  default ``C``) on the pretrained embedding (``pretrained_transform``, the
  input of the last unit): the classic "features and a linear model",
  trained on the training images (beside the selection runs, which train on
  them and validate on the rest) and on the training and validation images
  (beside the returned, refit models);
* ``flex-warm`` (measured, not a default): flex whose candidates start from
  the linear probe's weights (the head trained alone first, by ft-fc's run)
  instead of the new head's start, against flex's own selection run (both
  before any refit).

By default the new head starts as torch initializes an ``nn.Linear`` in
every run that tunes it with other weights (the setting ``head_start="random"``
of :func:`flexsk.config_context`), and as a logistic regression on the
pretrained features of the run's training images in a run that tunes it
alone (``head_alone_start="probe"``). ``--head-start random`` starts it at random in every run (into
``new-classes-random.csv``), ``--head-start probe`` as the logistic
regression in every run (``new-classes-probe.csv``); the report compares the
three.

Run, then report::

    python benchmarks/new_classes.py run --jobs 2   # -> benchmarks/new-classes.csv
    python benchmarks/new_classes.py run --jobs 2 --head-start random
    python benchmarks/new_classes.py run --jobs 2 --head-start probe
    python benchmarks/new_classes.py report         # -> benchmarks/new-classes.md

Two tables: Table 3's protocol (the bench's), the test accuracy of the
selection run's pick, trained on the training images only, the validation
images serving to choose and to stop; and the returned model's, after the
refit on training and validation images (FlexTuner's ``score``). Flex's
selection regret is the best candidate's test accuracy minus that of the
candidate it picked, both selection-run models.
"""

import argparse
import csv
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import flexsk
from flexsk import FlexTuner
from flexsk.datasets import make_digits_shift, subsample_per_class
from flexsk.strategies import Outcome, Strategy, best_of
from flexsk.zoo import load_source_net

HERE = Path(__file__).parent
CSV = {"default": HERE / "new-classes.csv", "random": HERE / "new-classes-random.csv",
       "probe": HERE / "new-classes-probe.csv"}
#: (HEAD_START, HEAD_ALONE_START) of each grid.
STARTS = {"default": ("random", "probe"), "random": ("random", "random"),
          "probe": ("probe", "probe")}
MARKDOWN = HERE / "new-classes.md"

TASKS = ("digits 5-9", "parity")
ARCHS = ("conv4", "conv7")
SHIFTS = ("blur", "noise", "occlusion", "rotation", "invert")
N_PER_DIGIT = (10, 40)
TUNED = ("flex", "fast", "faster", "ft-fc", "ft-all")
METHODS = TUNED + ("logreg",)
NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                  "nine"])


def warm_flex(ctx):
    """Flex whose candidates start from the linear probe (the head trained alone)."""
    last = ctx.units[-1].name
    probe = ctx.tune(last)
    tuned = {unit.name: ctx.tune(unit.name, start=probe.module) for unit in ctx.units[:-1]}
    tuned[last] = probe
    tuned["all"] = ctx.tune("all", start=probe.module)
    evaluations = {key: run.evaluation for key, run in tuned.items()}
    return Outcome(best_of(evaluations), tuned)


def flex_runs(n_units):
    return n_units + 1


WARM = Strategy("flex-warm", warm_flex, n_runs=flex_runs)


def task_data(task, shift, split):
    """Images of ``split`` and their labels for ``task``."""
    X, digits = make_digits_shift(shift, split=split, return_X_y=True)
    if task == "parity":
        return X, np.where(digits % 2 == 0, "even", "odd")
    keep = digits >= 5
    return X[keep], NAMES[digits[keep]]


def source_net(task, arch):
    return load_source_net(arch, digits=[0, 1, 2, 3, 4] if task == "digits 5-9" else None)


def scenario_rows(task, arch, shift, n_per_digit, repeat=0, head_start="default"):
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    head_start, head_alone_start = STARTS[head_start]
    with flexsk.config_context(head_start=head_start, head_alone_start=head_alone_start):
        return _scenario_rows(task, arch, shift, n_per_digit, repeat)


def _scenario_rows(task, arch, shift, n_per_digit, repeat):
    net = source_net(task, arch)
    X_pool, y_pool = make_digits_shift(shift, split="train", return_X_y=True)
    picked = subsample_per_class(y_pool, n_per_digit, random_state=repeat)
    X, y = task_data(task, shift, "train")
    keep = np.isin(np.flatnonzero(y_pool >= (5 if task == "digits 5-9" else 0)), picked)
    X, y = X[keep], y[keep]
    X_val, y_val = task_data(task, shift, "val")
    X_test, y_test = task_data(task, shift, "test")
    base = dict(task=task, arch=arch, shift=shift, n_per_digit=n_per_digit, repeat=repeat,
                n_train=len(y), n_classes=len(np.unique(y)))
    rows = []
    for method in TUNED + (WARM,):
        started = time.perf_counter()
        warm = method is WARM
        tuner = FlexTuner(net, strategy=method, keep_candidates=True, refit=not warm,
                          random_state=repeat)
        tuner.fit(X, y, X_val=X_val, y_val=y_val)
        candidates = tuner.score_candidates(X_test, y_test)
        rows.append(dict(base, method=WARM.name if warm else method,
                         head=tuner.head_, selected=str(tuner.selected_unit_),
                         test_accuracy=float(tuner.score(X_test, y_test)),
                         selection_run_accuracy=candidates[tuner.selected_unit_],
                         candidate_test_scores=json.dumps(
                             {str(k): v for k, v in candidates.items()}),
                         fit_seconds=round(time.perf_counter() - started, 2)))
        if method == "ft-fc":
            started = time.perf_counter()
            embedded = [tuner.pretrained_transform(x) for x in (X, X_val, X_test)]
            accuracies = []
            for inputs, labels in ((embedded[0], y),
                                   (np.concatenate(embedded[:2]), np.concatenate([y, y_val]))):
                logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
                accuracies.append(float(logreg.fit(inputs, labels).score(embedded[2], y_test)))
            rows.append(dict(base, method="logreg", head=None, selected="",
                             test_accuracy=accuracies[1], selection_run_accuracy=accuracies[0],
                             candidate_test_scores="",
                             fit_seconds=round((time.perf_counter() - started) / 2, 2)))
    return rows


def run(jobs, head_start):
    scenarios = [(t, a, s, n) for t in TASKS for a in ARCHS for s in SHIFTS
                 for n in N_PER_DIGIT]
    for task in TASKS:  # pretrain (or load) the source nets once, before the workers
        for arch in ARCHS:
            source_net(task, arch)
    started = time.perf_counter()
    with open(CSV[head_start], "w", newline="") as f:
        writer = None
        for rows in Parallel(n_jobs=jobs, return_as="generator")(
                delayed(scenario_rows)(*s, head_start=head_start) for s in scenarios):
            if writer is None:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
            writer.writerows(rows)
            f.flush()
            print(rows[0]["task"], rows[0]["arch"], rows[0]["shift"], rows[0]["n_per_digit"],
                  " ".join(f"{r['method']}={r['test_accuracy']:.3f}" for r in rows),
                  f"{time.perf_counter() - started:.0f} s", flush=True)


def _scenarios(path):
    """(task, net, shift, per digit) -> method -> row."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    by = {}
    for row in rows:
        key = (row["task"], row["arch"], row["shift"], int(row["n_per_digit"]))
        by.setdefault(key, {})[row["method"]] = row
    return dict(sorted(by.items()))


#: The accuracy columns of the two protocols.
PROTOCOLS = {"selection": "selection_run_accuracy", "refit": "test_accuracy"}


def _accuracies(got, protocol):
    return {m: float(got[m][PROTOCOLS[protocol]]) for m in METHODS}


def _summary(by, protocol):
    """The goals' counts and the mean accuracies of one grid under one protocol."""
    within, above = [], []
    for got in by.values():
        accuracy = _accuracies(got, protocol)
        within.append(accuracy["flex"] >= max(accuracy["ft-fc"], accuracy["ft-all"]) - 0.01)
        above.append(accuracy["flex"] >= accuracy["logreg"])
    return dict(n=len(within), within=sum(within), above=sum(above),
                means={m: np.mean([_accuracies(got, protocol)[m] for got in by.values()])
                       for m in METHODS})


def _selection(by):
    """Flex's selection regret, and the warm-start comparison, on selection-run models."""
    regrets, cold, warm = [], [], []
    for got in by.values():
        candidates = json.loads(got["flex"]["candidate_test_scores"])
        regrets.append(max(candidates.values()) - candidates[got["flex"]["selected"]])
        cold.append(float(got["flex"]["selection_run_accuracy"]))
        warm.append(float(got["flex-warm"]["selection_run_accuracy"]))
    return dict(regret=100 * np.mean(regrets), max_regret=100 * max(regrets),
                cold=np.mean(cold), warm=np.mean(warm),
                warm_better=sum(w > c for w, c in zip(warm, cold)),
                warm_worse=sum(w < c for w, c in zip(warm, cold)),
                seconds={m: np.median([float(got[m]["fit_seconds"]) for got in by.values()])
                         for m in METHODS + ("flex-warm",)})


def _goal_lines(summary):
    n = summary["n"]
    return [
        f"- flex within 1 point of the best of ft-fc and ft-all: **{summary['within']}/{n}** "
        f"({100 * summary['within'] / n:.0f} %).",
        f"- flex at or above logistic regression on the pretrained embedding: "
        f"**{summary['above']}/{n}** ({100 * summary['above'] / n:.0f} %)."]


def _selection_lines(selection, n):
    return [
        f"- flex's mean selection regret (selection-run models, test accuracy): "
        f"**{selection['regret']:.2f} points** (max {selection['max_regret']:.1f}).",
        f"- Warm start (flex-warm: candidates from the linear probe's trained weights), "
        f"selection-run picks: {selection['warm']:.3f} against flex's {selection['cold']:.3f} "
        f"(better in {selection['warm_better']}, worse in {selection['warm_worse']} of {n}).",
        "- Median fit seconds: " + ", ".join(f"{m} {s:.1f}" for m, s in
                                             selection["seconds"].items()) + "."]


def _table(by, protocol):
    out = ["| task | net | shift | per digit | " + " | ".join(METHODS) + " | flex's pick |",
           "|---|---|---|---|" + "---|" * (len(METHODS) + 1)]
    for key, got in by.items():
        accuracy = list(_accuracies(got, protocol).values())
        cells = [f"**{a:.3f}**" if a == max(accuracy) else f"{a:.3f}" for a in accuracy]
        out.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | " + " | ".join(cells)
                   + f" | {got['flex']['selected']} |")
    means = _summary(by, protocol)["means"]
    return out + ["| mean | | | | " + " | ".join(f"{means[m]:.3f}" for m in METHODS)
                  + " | |", ""]


def report():
    by = _scenarios(CSV["default"])
    n = len(by)
    out = ["# New classes: a pretrained net tuned to labels it never had", "",
           "Written by `python benchmarks/new_classes.py report` from `new-classes.csv` "
           "`new-classes-random.csv` and `new-classes-probe.csv` (`python "
           "benchmarks/new_classes.py run --jobs 2 [--head-start random|probe]`); the "
           "protocol is in the script's docstring. `logreg` "
           "is logistic regression on the pretrained embedding; the best of a row in bold.",
           "", "## Table 3's protocol: the selection run's pick", "",
           "Trained on the training images; the validation images choose and stop. "
           "`logreg` is fitted on the training images.", ""]
    out += _table(by, "selection") + _goal_lines(_summary(by, "selection"))
    selection = _selection(by)
    out += _selection_lines(selection, n) + [
        "", "## The returned model, after the refit on training and validation images", "",
        "`logreg` is fitted on the training and validation images.", ""]
    out += _table(by, "refit") + _goal_lines(_summary(by, "refit")) + [""]
    if CSV["random"].exists() and CSV["probe"].exists():
        out += ["## The new head's start", "",
                "Means over the scenarios of each grid. The default: at random with other "
                "weights, as a logistic regression on the pretrained features of the run's "
                "training images alone. `random`: at random in every run. `probe`: as the "
                "logistic regression in every run.", "",
                "| head start | protocol | " + " | ".join(METHODS) + " | flex within 1 "
                "point | flex >= logreg | regret (points) | flex's median fit (s) |",
                "|---|---|" + "---|" * (len(METHODS) + 4)]
        for name, grid in (("default", by), ("random", _scenarios(CSV["random"])),
                           ("probe", _scenarios(CSV["probe"]))):
            chosen = _selection(grid)
            for protocol in PROTOCOLS:
                summary = _summary(grid, protocol)
                out.append(f"| {name} | {protocol} | " + " | ".join(
                    f"{summary['means'][m]:.3f}" for m in METHODS)
                    + f" | {summary['within']}/{summary['n']} | {summary['above']}/"
                    f"{summary['n']} | {chosen['regret']:.2f} | "
                    f"{chosen['seconds']['flex']:.1f} |")
        out.append("")
    MARKDOWN.write_text("\n".join(out))
    print("\n".join(out))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "report"))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--head-start", choices=tuple(CSV), default="default")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.jobs, args.head_start)
    report()


if __name__ == "__main__":
    sys.exit(main())
