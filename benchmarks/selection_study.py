"""How to select, measured: ranking rules, patience, refit length and cross-validation.

Every training run of flex-tuning is recorded epoch by epoch (validation
accuracy, validation loss and test accuracy) with early stopping off, so
that any early-stopping rule and any ranking rule can be replayed afterwards
on the same trajectories: a rule's stop and best epoch are a function of the
validation history alone. ft-all and ft-fc (1) are flex's ``"all"`` and
last-unit candidates (their seeds derive from their keys, so they are the
very runs those strategies train).

Two sets of scenarios:

* ``bench``: the grid of ``flexsk bench`` (zoo nets conv4 and conv7, its 10
  shifts, 2, 10 and 40 training images per class, the fixed 200-image
  validation set), with 2 repeats at 2 images per class (the bench has 5) and
  1 elsewhere;
* ``unseen``: two networks defined here (a plain CNN and a residual net with
  BatchNorm, pretrained here on the source digits) and 8 shifts that the
  bench does not have, with 10 images per class plus 200 more, of which
  FlexTuner holds out 20% itself, over 3 seeds;
* ``long``: the bench's 2 and 10 images per class (one repeat), recorded for
  at least LONG_STEPS optimizer steps: how long tiny sets need to train
  (``max_epochs="auto"``).

Commands (each writes next to this file)::

    python benchmarks/selection_study.py record bench     # selection-study-bench.csv
    python benchmarks/selection_study.py record unseen    # selection-study-unseen.csv
    python benchmarks/selection_study.py record long      # selection-study-long.csv
    gzip benchmarks/selection-study-{bench,unseen,long}.csv  # as kept in the repository
    python benchmarks/selection_study.py analyze          # selection-study.md
    python benchmarks/selection_study.py check unseen     # selection-study-check-unseen.csv
    python benchmarks/selection_study.py check unseen --cv 5  # ...-check-unseen-cv5.csv
    python benchmarks/selection_study.py check bench --strategies flex ft-all ft-fc-1 \
        --shifts blur rotation noise invert  # selection-study-check-bench.csv

``record`` and ``check`` take ``--shifts`` (and ``check unseen`` takes
``--nets``) with ``--part NAME``, to run as several processes, each writing
its own ``...-NAME.csv``; concatenate the parts afterwards. All runs use one
torch thread. The committed ``long`` recording lacks the colorspace shift;
the committed ``check bench`` ran as two parts (blur and rotation; noise and
invert) on a 2-core machine (torch 2.13), before ``check`` recorded both
refits' seconds (its ``refit_seconds`` are those of the refit in epochs).
"""

import argparse
import csv
import gzip
import json
import math
import sys
import time
from collections import OrderedDict, defaultdict
from pathlib import Path

import numpy as np
import torch
from user_nets import source_net

import flexsk
from flexsk import FlexTuner
from flexsk.strategies import Evaluation, Patience, Stopping
from flexsk.datasets import load_digits_source, make_digits_shift, subsample_per_class
from flexsk.zoo import load_source_net

HERE = Path(__file__).parent
MAX_EPOCHS = 100
IMAGE_SIZE = 16
UNSEEN_SHIFTS = ("contrast", "salt_pepper", "hflip", "translate", "pixelate", "stripes",
                 "motion_blur", "edges")
UNSEEN_NETS = ("plaincnn", "resbn")
UNSEEN_SEEDS = (0, 1, 2)
COLUMNS = ["set", "net", "shift", "ratio", "repeat", "key", "position", "steps_per_epoch",
           "epoch", "val_accuracy", "val_loss", "test_accuracy"]


# -- the unseen networks and shifts ---------------------------------------------------------


_NETS = {}


def unseen_net(name):
    """A user's net: built here and pretrained on the source digits (cached per process)."""
    if name not in _NETS:
        X, y = load_digits_source(split="train", image_size=IMAGE_SIZE, return_X_y=True)
        net = source_net(name, X, y)
        _NETS[name] = net
    return _NETS[name]


def unseen_shift(shift, X, rng):
    """The 8 shifts that ``flexsk bench`` does not have, on clean grey images in [0, 1]."""
    if shift == "contrast":
        return 0.35 + 0.3 * X
    if shift == "salt_pepper":
        noise = rng.rand(*X.shape)
        return np.where(noise < 0.1, 0.0, np.where(noise > 0.9, 1.0, X))
    if shift == "hflip":
        return X[..., ::-1].copy()
    if shift == "translate":
        out = np.zeros_like(X)
        out[..., 3:, 3:] = X[..., :-3, :-3]
        return out
    if shift == "pixelate":
        small = X.reshape(*X.shape[:-2], X.shape[-2] // 4, 4, X.shape[-1] // 4, 4).mean((-3, -1))
        return np.repeat(np.repeat(small, 4, axis=-2), 4, axis=-1)
    if shift == "stripes":
        stripes = 0.5 + 0.5 * np.sin(np.arange(X.shape[-1]) * 2 * np.pi / 4)
        return np.clip(X + 0.5 * stripes[None, None, None, :], 0, 1)
    if shift == "motion_blur":
        padded = np.pad(X, [(0, 0)] * (X.ndim - 1) + [(2, 2)], mode="edge")
        return np.mean([padded[..., i:i + X.shape[-1]] for i in range(5)], axis=0)
    if shift == "edges":
        gy, gx = np.gradient(X, axis=(-2, -1))
        edges = np.hypot(gx, gy)
        return edges / edges.max(axis=(-2, -1), keepdims=True).clip(1e-6)
    raise ValueError(shift)


def unseen_scenario(shift, seed):
    """300 labelled images (10 per class + 200 more) and the test set, shifted."""
    bunch = make_digits_shift("invert", image_size=IMAGE_SIZE, random_state=0)
    clean = 1.0 - bunch.data  # invert undone: clean target digits
    X = unseen_shift(shift, clean, np.random.RandomState(1000 + UNSEEN_SHIFTS.index(shift)))
    X = X.astype(np.float32)
    y = bunch.target
    pool = np.flatnonzero(bunch.split == "train")
    train = pool[subsample_per_class(y[pool], 10, random_state=seed)]
    extra = np.flatnonzero(bunch.split == "val")  # 20 per class: the 200 more
    labelled = np.sort(np.concatenate([train, extra]))
    test = np.flatnonzero(bunch.split == "test")
    return X[labelled], y[labelled], X[test], y[test]


# -- scenarios -------------------------------------------------------------------------------


def bench_scenarios(grid=((2, 2), (10, 1), (40, 1)), name="bench"):
    from flexsk.datasets import SHIFTS

    for shift in SHIFTS:
        n_channels = 3 if shift in ("mnistm", "colorspace") else 1
        bunch = make_digits_shift(shift, image_size=IMAGE_SIZE, n_channels=n_channels,
                                  random_state=0)
        X, y = bunch.data, bunch.target
        pool = np.flatnonzero(bunch.split == "train")
        val = np.flatnonzero(bunch.split == "val")
        test = np.flatnonzero(bunch.split == "test")
        for net_name in ("conv4", "conv7"):
            net = load_source_net(net_name, n_channels=n_channels, image_size=IMAGE_SIZE)
            for ratio, repeats in grid:
                for repeat in range(repeats):
                    train = pool[subsample_per_class(y[pool], ratio, random_state=repeat)]
                    yield (dict(set=name, net=net_name, shift=shift, ratio=ratio,
                                repeat=repeat), net, (X[train], y[train]),
                           (X[val], y[val]), (X[test], y[test]))


def unseen_scenarios(nets=None):
    for shift in UNSEEN_SHIFTS:
        for net_name in nets or UNSEEN_NETS:
            net = unseen_net(net_name)
            for seed in UNSEEN_SEEDS:
                X, y, X_test, y_test = unseen_scenario(shift, seed)
                yield (dict(set="unseen", net=net_name, shift=shift, ratio=10, repeat=seed),
                       net, (X, y), None, (X_test, y_test))


def long_scenarios():
    """The bench's small sets (2 and 10 images per class, one repeat), recorded for
    LONG_STEPS optimizer steps: how long runs on tiny sets need (``max_epochs="auto"``)."""
    return bench_scenarios(grid=((2, 1), (10, 1)), name="long")


SCENARIOS = {"bench": bench_scenarios, "unseen": unseen_scenarios, "long": long_scenarios}
#: Steps recorded by ``record long`` (at least MAX_EPOCHS epochs).
LONG_STEPS = 800


def record_epochs(which, n_train, batch_size=32):
    """Epochs a recorded run lasts: MAX_EPOCHS, and for ``long`` at least LONG_STEPS steps."""
    if which != "long":
        return MAX_EPOCHS
    return max(MAX_EPOCHS, math.ceil(LONG_STEPS / math.ceil(n_train / batch_size)))


# -- recording -------------------------------------------------------------------------------


class _Recorder:
    """FlexTuner's ``on_epoch``: the test accuracy of every run at every epoch."""

    def __init__(self, X_test, y_test):
        self.X_test = torch.as_tensor(X_test)
        self.y_test = torch.as_tensor(y_test)
        self.rows = []
        self.steps = {}

    def __call__(self, record):
        if record.refit:
            return
        with torch.no_grad():
            predicted = record.module(self.X_test).argmax(1)  # every class is a target class
        accuracy = float((predicted == self.y_test).float().mean())
        self.rows.append((record.candidate, record.epoch, record.val_accuracy, record.val_loss,
                          accuracy))
        if record.epoch == 1:
            self.steps[record.candidate] = record.n_steps


def _trajectories(which):
    """The recorded trajectories: the plain CSV, or the gzipped one kept in the repository."""
    path = HERE / f"selection-study-{which}.csv"
    return path if path.exists() else path.with_suffix(".csv.gz")


def record(which, shifts=None, part=None):
    torch.set_num_threads(1)
    path = HERE / f"selection-study-{which}{'-' + part if part else ''}.csv"
    if path.with_suffix(".csv.gz").exists():
        sys.exit(f"{path.with_suffix('.csv.gz')} holds earlier runs: gunzip it to resume, or "
                 f"move it away to record anew.")
    done = set()
    if path.exists():
        with open(path, newline="") as f:
            done = {(r["net"], r["shift"], r["ratio"], r["repeat"]) for r in csv.DictReader(f)}
    new = not path.exists()
    started = time.perf_counter()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        if new:
            writer.writeheader()
        for scenario, net, (X, y), val, (X_test, y_test) in SCENARIOS[which]():
            key = (scenario["net"], scenario["shift"], str(scenario["ratio"]),
                   str(scenario["repeat"]))
            if key in done or (shifts and scenario["shift"] not in shifts):
                continue
            recorder = _Recorder(X_test, y_test)
            tuner = FlexTuner(net, strategy="flex", max_epochs=record_epochs(which, len(y)),
                              patience=None, refit=False, random_state=scenario["repeat"],
                              on_epoch=recorder)
            if val is None:
                tuner.fit(X, y)
            else:
                tuner.fit(X, y, X_val=val[0], y_val=val[1])
            order = tuner.units_ + ["all"]
            for k, epoch, val_accuracy, val_loss, test_accuracy in recorder.rows:
                writer.writerow(dict(scenario, key=k, position=order.index(k),
                                     steps_per_epoch=recorder.steps[k], epoch=epoch,
                                     val_accuracy=val_accuracy, val_loss=f"{val_loss:.6g}",
                                     test_accuracy=test_accuracy))
            f.flush()
            print(f"{scenario} {time.perf_counter() - started:.0f} s", file=sys.stderr,
                  flush=True)


# -- replaying rules -----------------------------------------------------------------------


def load(which):
    """scenario -> {key: (position, steps_per_epoch, [(val_acc, val_loss, test_acc)...])}."""
    runs = defaultdict(dict)
    path = _trajectories(which)
    with (gzip.open(path, "rt", newline="") if path.suffix == ".gz"
          else open(path, newline="")) as f:
        for r in csv.DictReader(f):
            scenario = (r["net"], r["shift"], int(r["ratio"]), int(r["repeat"]))
            entry = runs[scenario].setdefault(
                r["key"], [int(r["position"]), int(r["steps_per_epoch"]), []])
            entry[2].append((float(r["val_accuracy"]), float(r["val_loss"]),
                             float(r["test_accuracy"])))
    return runs


LOSS_RTOL = 1e-4  # the library's default tolerance of a new loss minimum


def stop(history, patience, use_loss, loss_progress=False, keep="rank"):
    """The epoch an early-stopping rule keeps, replayed on a validation history.

    ``loss_progress``: a new minimum of the validation loss also resets
    patience (FlexTuner's rule since version 0.3). ``keep``: which epoch the
    run returns, the best under the ranking rule (``"rank"``) or the lowest
    validation loss (``"loss"``).
    """
    best_epoch = last_progress = 0
    best = Evaluation(*history[0][:2])
    lowest, lowest_epoch = best.loss, 0
    for epoch in range(1, len(history)):
        now = Evaluation(*history[epoch][:2])
        if use_loss:
            better = now.improves_on(best)
        else:
            better = now.accuracy > best.accuracy
        lower = now.finite and now.loss < lowest - LOSS_RTOL * abs(lowest)
        if better:
            best, best_epoch = now, epoch
        if lower:
            lowest, lowest_epoch = now.loss, epoch
        if better or (loss_progress and lower):
            last_progress = epoch
        elif patience is not None and epoch - last_progress >= patience:
            break
    return (best_epoch if keep == "rank" else lowest_epoch), epoch


RULES = OrderedDict([
    # name: (patience in epochs, floor in optimizer steps, rank by loss on ties)
    ("old: accuracy, earliest; patience 5", (5, 0, False)),
    ("old: accuracy, earliest; patience 10 (bench)", (10, 0, False)),
    ("accuracy, loss; patience 5", (5, 0, True)),
    ("accuracy, loss; patience 10", (10, 0, True)),
    ("accuracy, loss; patience 5 epochs, >= 10 steps", (5, 10, True)),
    ("accuracy, loss; patience 5 epochs, >= 20 steps", (5, 20, True)),
    ("accuracy, loss; patience 5 epochs, >= 30 steps", (5, 30, True)),
    ("accuracy, loss; patience 5 epochs, >= 40 steps (0.2 default)", (5, 40, True)),
    ("accuracy, loss; patience 5 epochs, >= 50 steps", (5, 50, True)),
    ("accuracy, loss; patience 5 epochs, >= 80 steps", (5, 80, True)),
    ("accuracy, loss; patience 10 epochs, >= 30 steps", (10, 30, True)),
    ("accuracy, loss; no early stopping", (None, 0, True)),
    # patience also reset by a new validation-loss minimum (0.3)
    ("progress in either; patience 5 epochs, >= 20 steps", (5, 20, True, True)),
    ("progress in either; patience 5 epochs, >= 40 steps (0.3 default)", (5, 40, True, True)),
    ("progress in either; patience 5 epochs, >= 80 steps", (5, 80, True, True)),
    ("progress in either; patience 10 epochs, >= 40 steps", (10, 40, True, True)),
    ("progress in either, keep lowest loss; patience 5 epochs, >= 40 steps",
     (5, 40, True, True, "loss")),
])


def replay(scenario_runs, rule, max_epochs=None):
    """Picks and test accuracies of flex, ft-all and ft-fc (1) under ``rule``."""
    patience, floor, use_loss, *more = rule
    kept = {}
    for key, (position, steps, history) in scenario_runs.items():
        p = None if patience is None else max(patience, math.ceil(floor / steps))
        if max_epochs is not None:
            history = history[:max_epochs(steps) + 1]
        epoch, last = stop(history, p, use_loss, *more)
        kept[key] = (position, history[epoch], epoch, last * steps)
    if use_loss:
        order = sorted(kept, key=lambda k: (-kept[k][1][0], kept[k][1][1], kept[k][0]))
    else:
        order = sorted(kept, key=lambda k: (-kept[k][1][0], kept[k][0]))
    pick = order[0]
    last_unit = max((k for k in kept if k != "all"), key=lambda k: kept[k][0])
    tests = {k: v[1][2] for k, v in kept.items()}
    return dict(pick=pick, flex=tests[pick], ft_all=tests["all"], ft_fc=tests[last_unit],
                best=max(tests.values()), epochs={k: v[2] for k, v in kept.items()},
                steps=sum(v[3] for v in kept.values()),
                below_chance=sum(v[1][2] < 0.1 for v in kept.values()),
                loss_ratio=max(v[1][1] / history_start(scenario_runs[k]) for k, v in kept.items()))


def history_start(run):
    """The validation loss of a recorded run's starting weights."""
    return run[2][0][1]


def summarize(runs, rule, max_epochs=None):
    by_scenario = defaultdict(list)
    for (net, shift, ratio, repeat), scenario_runs in runs.items():
        by_scenario[(net, shift, ratio)].append(replay(scenario_runs, rule, max_epochs))
    rows = []
    for key, results in by_scenario.items():
        mean = {m: np.mean([r[m] for r in results]) for m in ("flex", "ft_all", "ft_fc", "best")}
        rows.append(dict(scenario=key, **mean))
    flex = np.array([r["flex"] for r in rows])
    ft_all = np.array([r["ft_all"] for r in rows])
    ft_fc = np.array([r["ft_fc"] for r in rows])
    regret_runs = [r["best"] - r["flex"] for rs in by_scenario.values() for r in rs]
    baseline = np.maximum(ft_all, ft_fc)
    every = [r for rs in by_scenario.values() for r in rs]
    return dict(n=len(rows), flex=flex.mean(), ft_all=ft_all.mean(), ft_fc=ft_fc.mean(),
                steps=int(np.sum([r["steps"] for r in every])),
                below_chance=int(np.sum([r["below_chance"] for r in every])),
                loss_ratio=float(np.max([r["loss_ratio"] for r in every])),
                regret=100 * np.mean(regret_runs),
                regret_over_1=int(np.sum(np.array(regret_runs) > 0.01)),
                n_runs=len(regret_runs),
                within_1=int(np.sum(flex >= baseline - 0.01)))


BUDGET_RULES = OrderedDict([
    ("progress in either; patience 5 epochs, >= 40 steps (0.3 default)", (5, 40, True, True)),
    ("accuracy, loss; patience 5 epochs, >= 40 steps (0.2 default)", (5, 40, True)),
    ("accuracy, loss; no early stopping", (None, 0, True)),
])
#: ``max_epochs="auto"`` candidates: at least 100 epochs and at least this many steps.
BUDGET_STEPS = (100, 200, 400, 800)


# -- the validation schedule and the budgets (replayed with the library's own rule) -------------


#: Training samples of a recorded run by set and ratio, and its validation samples.
def _sizes(which, ratio):
    return (240, 60) if which == "unseen" else (10 * ratio, 200)


def replay_run(history, steps_per_epoch, n_train, n_val, *, validate_every="auto",
               rtol=LOSS_RTOL, max_steps=400):
    """A recorded run replayed under FlexTuner's stopping rule (:class:`Patience`), with a
    validation schedule, the loss tolerance and a step budget: its kept evaluation, its
    optimizer steps, its validation passes and whether it ended at its cap while still
    improving."""
    batch_size = math.ceil(n_train / steps_per_epoch)
    stopping = Stopping.auto(n_train=n_train, n_val=n_val, batch_size=batch_size,
                             max_epochs=max(100, math.ceil(max_steps / steps_per_epoch)),
                             validate_every=validate_every)
    last_epoch = min(stopping.max_epochs, len(history) - 1)
    rule = Patience(stopping.patience, Evaluation(*history[0][:2]), rtol=rtol)
    passes, epoch = 1, 0
    for epoch in range(1, last_epoch + 1):
        if not (stopping.validates(epoch) or epoch == last_epoch):
            continue
        passes += 1
        if rule.update(epoch, Evaluation(*history[epoch][:2])):
            break
    at_cap = epoch == last_epoch and epoch - rule.best_epoch < stopping.patience
    return history[rule.best_epoch], epoch * steps_per_epoch, passes, at_cap


def schedule_summary(runs, which, **rule):
    """Flex, ft-all and ft-fc (1) replayed under ``rule``, with the cost of the runs in
    optimizer steps plus validation passes (a pass over ``n_val`` images costs
    ``n_val / (3 * images per step)`` steps: a forward pass against a forward and backward
    pass)."""
    flex, ft_all, ft_fc, regret = [], [], [], []
    steps = validation = capped = n_runs = below = 0
    for (net, shift, ratio, repeat), candidates in runs.items():
        n_train, n_val = _sizes(which, ratio)
        kept = {}
        for key, (position, steps_per_epoch, history) in candidates.items():
            best, run_steps, passes, at_cap = replay_run(history, steps_per_epoch, n_train,
                                                         n_val, **rule)
            kept[key] = (position, best)
            steps += run_steps
            validation += passes * n_val / (3 * n_train / steps_per_epoch)
            capped += at_cap
            n_runs += 1
            below += best[2] < 0.1
        order = sorted(kept, key=lambda k: (-kept[k][1][0], kept[k][1][1], kept[k][0]))
        tests = {k: v[1][2] for k, v in kept.items()}
        last_unit = max((k for k in kept if k != "all"), key=lambda k: kept[k][0])
        flex.append(tests[order[0]])
        ft_all.append(tests["all"])
        ft_fc.append(tests[last_unit])
        regret.append(100 * (max(tests.values()) - tests[order[0]]))
    return dict(flex=np.mean(flex), ft_all=np.mean(ft_all), ft_fc=np.mean(ft_fc),
                regret=np.mean(regret), below=below, capped=capped, n_runs=n_runs,
                steps=steps, cost=steps + validation, validation=validation)


#: Rules replayed by the schedule study: label -> replay_run settings.
SCHEDULES = OrderedDict([
    ("validate every epoch (0.3)", dict(validate_every=1)),
    ("validate_every='auto' (every ceil(n_val / n_train) epochs, at most patience / 2)",
     dict()),
    ("auto, loss tolerance 1e-3", dict(rtol=1e-3)),
    ("auto, loss tolerance 1e-2", dict(rtol=1e-2)),
    ("auto, budget 200 steps", dict(max_steps=200)),
    ("auto, budget 800 steps", dict(max_steps=800)),
])


def schedule_lines():
    lines = ["## The validation schedule and the budgets (`validate_every`, loss tolerance, "
             "step budget)", "",
             "Each recorded run replayed with FlexTuner's stopping rule "
             "(`flexsk.strategies.Patience` and `Stopping.auto`) under a validation schedule. "
             "Cost: optimizer steps plus validation passes in step units (a pass over the "
             "validation images costs a third of training on as many images); relative to "
             "the first row of each block. Validation: its share of that cost. At cap: runs "
             "that ended at their budget while still improving (best epoch among the last "
             "`patience`). The `long` set has 2 and 10 images per class recorded for 800 "
             "steps; the `bench` set's 40 per class, 100 epochs; the unseen set, 100 epochs.",
             ""]
    for which, ratios in (("long", (2, 10)), ("bench", (40,)), ("unseen", (10,))):
        if not _trajectories(which).exists():
            continue
        runs = load(which)
        for ratio in ratios:
            subset = {k: v for k, v in runs.items() if k[2] == ratio}
            lines += [f"### {which}, {ratio} images per class ({len(subset)} runs)", "",
                      "| rule | flex | ft-all | ft-fc (1) | regret | below chance | at cap | "
                      "cost | validation |", "|---|---|---|---|---|---|---|---|---|"]
            base = None
            for label, rule in SCHEDULES.items():
                r = schedule_summary(subset, which, **rule)
                base = base or r["cost"]
                lines.append(f"| {label} | {r['flex']:.4f} | {r['ft_all']:.4f} | "
                             f"{r['ft_fc']:.4f} | {r['regret']:.2f} | {r['below']} | "
                             f"{r['capped']}/{r['n_runs']} | {r['cost'] / base:.2f} | "
                             f"{r['validation'] / r['cost']:.0%} |")
            lines.append("")
    return lines


def analyze():
    lines = ["# Selection study: replayed rules", "",
             "From `python benchmarks/selection_study.py analyze` on the recorded "
             "trajectories. Regret: test accuracy of the best of flex's candidates in "
             "hindsight minus the picked one's, in points, per run. Within 1: scenarios "
             "where flex's mean is within 1 point of max(ft-all, ft-fc (1)). Below chance: "
             "candidates (of all runs) whose kept epoch tests below 0.1. Steps: optimizer "
             "steps of every candidate until its run stops, summed.", ""]
    for which in ("bench", "unseen"):
        if not _trajectories(which).exists():
            continue
        runs = load(which)
        lines += [f"## {which} ({len(runs)} runs)", "", _RULE_HEADER,
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, rule in RULES.items():
            lines.append(_rule_row(name, summarize(runs, rule)))
        lines.append("")
    if _trajectories("long").exists():
        runs = load("long")
        lines += [f"## long: the step budget ({len(runs)} runs)", "",
                  "The bench's 2 and 10 images per class (one repeat), recorded for 800 "
                  "optimizer steps: each run replayed with at most max(100 epochs, S steps).",
                  "", _RULE_HEADER.replace("| rule |", "| S | rule |"),
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for steps in BUDGET_STEPS:
            for name, rule in BUDGET_RULES.items():
                summary = summarize(runs, rule, _budget(steps))
                lines.append(f"| {steps} " + _rule_row(name, summary))
        lines.append("")
    lines += schedule_lines()
    lines += check_summary()
    text = "\n".join(lines)
    (HERE / "selection-study.md").write_text(text + "\n")
    print(text)


_RULE_HEADER = ("| rule | flex | ft-all | ft-fc (1) | regret | regret > 1 pt | within 1 | "
                "below chance | steps |")


def _budget(steps):
    return lambda steps_per_epoch: max(MAX_EPOCHS, math.ceil(steps / steps_per_epoch))


def _rule_row(name, s):
    return (f"| {name} | {s['flex']:.3f} | {s['ft_all']:.3f} | {s['ft_fc']:.3f} "
            f"| {s['regret']:.2f} | {s['regret_over_1']}/{s['n_runs']} "
            f"| {s['within_1']}/{s['n']} | {s['below_chance']} | {s['steps']} |")


def _read_check(name):
    path = HERE / f"selection-study-check-{name}.csv"
    if not path.exists():
        return None
    by_run = defaultdict(dict)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            by_run[(r["net"], r["shift"], int(r["ratio"]), int(r["repeat"]))][r["strategy"]] = r
    return by_run


def check_summary():
    """The defaults end to end: refit lengths, the held-out criteria, and cv's cost."""
    lines = []
    for which in ("unseen", "bench"):
        runs = _read_check(which)
        if not runs:
            continue
        strategies = [s for s, _ in CHECK_STRATEGIES if all(s in v for v in runs.values())]
        complete = {k: v for k, v in runs.items() if all(s in v for s in strategies)}
        era = (", the bench's blur, rotation, noise and invert shifts" if which == "bench"
               else "")
        lines += [f"## Defaults end to end: {which} ({len(complete)} runs, "
                  f"`check {which}`{era})", "",
                  "Mean test accuracy of the selection run's pick, and of the pick refitted "
                  "on training and validation data for the selection run's peak length in "
                  "optimizer steps or in epochs.", "",
                  "| strategy | selection run | refit, steps | refit, epochs |",
                  "|---|---|---|---|"]
        for s in strategies:
            cells = [np.mean([float(v[s][c]) for v in complete.values()])
                     for c in ("selection_test", "refit_steps_test", "refit_epochs_test")]
            lines.append(f"| {s} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
        lines.append("")
        if {"flex", "ft-all", "ft-fc-1"} <= set(strategies):
            lines += ["| criterion | selection run | refit, steps | refit, epochs |",
                      "|---|---|---|---|"]
            columns = ("selection_test", "refit_steps_test", "refit_epochs_test")

            def mean(s, c):
                return np.mean([float(v[s][c]) for v in complete.values()])

            def close(v, c):
                best = max(float(v["ft-all"][c]), float(v["ft-fc-1"][c]))
                return float(v["flex"][c]) >= best - 0.01

            within = [sum(close(v, c) for v in complete.values()) for c in columns]
            lines.append("| flex within 1 point of max(ft-all, ft-fc (1)), runs | "
                         + " | ".join(f"{w}/{len(complete)}" for w in within) + " |")
            rivals = ["ft-all", "ft-fc-1"] + [r for r in ("auto-rgn", "lp-ft", "llrd")
                                              if r in strategies]
            if len(rivals) > 2:
                within = [sum(float(v["flex"][c]) >= max(float(v[r][c]) for r in rivals) - 0.01
                              for v in complete.values()) for c in columns]
                lines.append(f"| flex within 1 point of max({', '.join(rivals)}), runs | "
                             + " | ".join(f"{w}/{len(complete)}" for w in within) + " |")
                for r in rivals[2:]:
                    lines.append(f"| mean flex − mean {r}, points | " + " | ".join(
                        f"{100 * (mean('flex', c) - mean(r, c)):+.2f}" for c in columns) + " |")
            lines.append("| mean flex − mean ft-all, points | " + " | ".join(
                f"{100 * (mean('flex', c) - mean('ft-all', c)):+.2f}" for c in columns) + " |")
            if "fast" in strategies:
                lines.append("| mean fast − mean ft-fc (1), points | " + " | ".join(
                    f"{100 * (mean('fast', c) - mean('ft-fc-1', c)):+.2f}"
                    for c in columns) + " |")
            regret = [100 * (float(v["flex"]["best_candidate_test"])
                             - float(v["flex"]["selection_test"])) for v in complete.values()]
            seconds = {c: np.median([float(v["flex"][c]) for v in complete.values()])
                       for c in ("selection_seconds", "refit_seconds")}
            lines += ["", f"Selection regret of flex: {np.mean(regret):.2f} points on "
                      f"average, above 1 point in {sum(r > 1 for r in regret)}/{len(regret)} "
                      f"runs. Median seconds of flex: selection "
                      f"{seconds['selection_seconds']:.1f}, refit {seconds['refit_seconds']:.1f}.",
                      ""]
    cv = _read_check("unseen-cv5")
    plain = _read_check("unseen")
    if cv and plain:
        common = [k for k in cv if k in plain and "flex" in plain[k]]
        picked = [json.loads(plain[k]["flex"]["candidate_tests"]).get(cv[k]["flex"]["selected"])
                  for k in common]
        regret_cv = [100 * (float(plain[k]["flex"]["best_candidate_test"]) - t)
                     for k, t in zip(common, picked) if t is not None]
        regret_one = [100 * (float(plain[k]["flex"]["best_candidate_test"])
                             - float(plain[k]["flex"]["selection_test"])) for k in common]
        cost = [float(cv[k]["flex"]["selection_seconds"])
                / float(plain[k]["flex"]["selection_seconds"]) for k in common]
        refit_cv = np.mean([float(cv[k]["flex"]["refit_epochs_test"]) for k in common])
        refit_one = np.mean([float(plain[k]["flex"]["refit_epochs_test"]) for k in common])
        lines += [f"## Cross-validated selection: flex, cv=5 (`check unseen --cv 5`, "
                  f"{len(common)} runs; cv=5 measured with the 0.2 defaults)", "",
                  "Regret of the pick, scored against the test accuracies of the candidates of "
                  "the run with one validation set (the same units, trained on 80% of the "
                  "data).", "",
                  "| | one validation set | cv=5 |", "|---|---|---|",
                  f"| regret of the pick, points | {np.mean(regret_one):.2f} | "
                  f"{np.mean(regret_cv):.2f} |",
                  f"| runs with regret above 1 point | {sum(r > 1 for r in regret_one)} | "
                  f"{sum(r > 1 for r in regret_cv)} |",
                  f"| test accuracy after refit (epochs) | {refit_one:.4f} | {refit_cv:.4f} |",
                  f"| selection time, median ratio to one validation set | 1 | "
                  f"{np.median(cost):.1f} |"]
        if all({"ft-all", "ft-fc-1"} <= set(plain[k]) for k in common):
            def best_baseline(k):
                return max(float(plain[k][s]["refit_epochs_test"]) for s in ("ft-all", "ft-fc-1"))

            def within(runs):
                return sum(float(runs[k]["flex"]["refit_epochs_test"]) >= best_baseline(k) - 0.01
                           - 1e-9 for k in common)

            ft_all = np.mean([float(plain[k]["ft-all"]["refit_epochs_test"]) for k in common])
            lines += [f"| flex within 1 point of max(ft-all, ft-fc (1)) after refit, runs | "
                      f"{within(plain)}/{len(common)} | {within(cv)}/{len(common)} |",
                      f"| mean flex − mean ft-all after refit, points | "
                      f"{100 * (refit_one - ft_all):+.2f} | {100 * (refit_cv - ft_all):+.2f} |"]
        lines.append("")
    return lines


# -- the defaults, end to end -----------------------------------------------------------------


CHECK_STRATEGIES = (("flex", dict(strategy="flex")), ("fast", dict(strategy="fast")),
                    ("ft-all", dict(strategy="ft-all")),
                    ("ft-fc-1", dict(strategy="ft-fc", n_fc_units=1)),
                    ("auto-rgn", dict(strategy="auto-rgn")), ("lp-ft", dict(strategy="lp-ft")),
                    ("llrd", dict(strategy="llrd")))
CHECK_COLUMNS = ["net", "shift", "ratio", "repeat", "strategy", "cv", "selected",
                 "selection_test", "best_candidate_test", "refit_steps_test",
                 "refit_epochs_test", "selection_seconds", "refit_seconds", "candidate_tests",
                 "refit_steps_seconds", "refit_epochs_seconds"]


def check(which, cv=None, strategies=None, shifts=None, nets=None, part=None):
    """Fit flex, fast, ft-all, ft-fc (1) and the recipes with the estimator's defaults.

    Records the selection run's pick and its test accuracy, the best
    candidate's in hindsight, and the test accuracy of the pick refitted for
    the selection run's peak in optimizer steps and in epochs (two fits
    that differ in the setting ``refit_length`` alone, so that their
    selection runs are the same; the estimator's default is one of them),
    and what each refit took.
    """
    torch.set_num_threads(1)
    suffix = ("" if cv is None else f"-cv{cv}") + (f"-{part}" if part else "")
    path = HERE / f"selection-study-check-{which}{suffix}.csv"
    done = set()
    if path.exists():
        with open(path, newline="") as f:
            done = {(r["net"], r["shift"], r["ratio"], r["repeat"], r["strategy"])
                    for r in csv.DictReader(f)}
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, CHECK_COLUMNS)
        if new:
            writer.writeheader()
        chosen = [(label, params) for label, params in CHECK_STRATEGIES
                  if label in (strategies or [label])]
        strategies = chosen if cv is None else chosen[:1]
        for scenario, net, (X, y), val, (X_test, y_test) in SCENARIOS[which](
                *([nets] if which == "unseen" else [])):
            if shifts and scenario["shift"] not in shifts:
                continue
            for label, params in strategies:
                key = (scenario["net"], scenario["shift"], str(scenario["ratio"]),
                       str(scenario["repeat"]), label)
                if key in done:
                    continue
                row = dict(net=scenario["net"], shift=scenario["shift"],
                           ratio=scenario["ratio"], repeat=scenario["repeat"], strategy=label,
                           cv=cv or "")
                # the same selection run twice (seeds derive from random_state and each
                # candidate's key), refitted for its peak in steps and in epochs
                for length in ("steps", "epochs"):
                    tuner = FlexTuner(net, keep_candidates=True, cv=cv,
                                      random_state=scenario["repeat"], **params)
                    with flexsk.config_context(refit_length=length):
                        if val is None:
                            tuner.fit(X, y)
                        else:
                            tuner.fit(X, y, X_val=val[0], y_val=val[1])
                    row[f"refit_{length}_test"] = tuner.score(X_test, y_test)
                    row[f"refit_{length}_seconds"] = round(tuner.refit_time_, 2)
                tests = tuner.score_candidates(X_test, y_test)
                row.update(selected="+".join(tuner.selected_unit_) if isinstance(
                               tuner.selected_unit_, tuple) else tuner.selected_unit_,
                           selection_test=tests[tuner.selected_unit_],
                           best_candidate_test=max(tests.values()),
                           selection_seconds=round(tuner.fit_time_ - tuner.refit_time_, 2),
                           refit_seconds=row[f"refit_{flexsk.get_config()['refit_length']}"
                                             f"_seconds"],
                           candidate_tests=json.dumps({"+".join(k) if isinstance(k, tuple)
                                                       else k: v for k, v in tests.items()}))
                writer.writerow(row)
                f.flush()
                print(row, file=sys.stderr, flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["record", "analyze", "check"])
    parser.add_argument("which", nargs="?", choices=sorted(SCENARIOS), default="bench")
    parser.add_argument("--cv", type=int, default=None, help="check: flex with cv folds")
    parser.add_argument("--shifts", nargs="+", default=None,
                        help="record, check: these shifts only")
    parser.add_argument("--nets", nargs="+", default=None, help="check unseen: these nets only")
    parser.add_argument("--part", default=None,
                        help="record, check: write selection-study-...-PART.csv (a process "
                        "of several; concatenate the parts afterwards)")
    parser.add_argument("--strategies", nargs="+", default=None,
                        help="check: these of flex, fast, ft-all, ft-fc-1 only")
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.which, args.shifts, args.part)
    elif args.command == "check":
        check(args.which, args.cv, args.strategies, args.shifts, args.nets, args.part)
    else:
        analyze()


if __name__ == "__main__":
    main()
