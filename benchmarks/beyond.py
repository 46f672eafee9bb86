"""Beyond the paper, measured: halving, rgn-unit, Auto-RGN, two units and pixel adapters
against flex.

Runs every strategy of :data:`SPECS` (default: :data:`DEFAULT`) on a grid of
scenarios, the zoo nets conv4 and conv7 at 16 px:

* grey shifts (blur, noise, occlusion, random_affine, fixed_affine, rotation,
  scaling) on the 1-channel nets,
* colour shifts (colorspace, mnistm) on the 3-channel nets,

each with 10 and 40 training images per class (:func:`subsample_per_class` of
the target ``"train"`` rows), the fixed ``"val"`` rows as ``X_val`` and the
``"test"`` rows for test accuracy; the estimator's defaults (``max_epochs``,
``patience``, ``validate_every``, ``refit``: the test accuracy is the returned
model's) with ``random_state=0`` (unless the strategy sets its own), one torch
thread. ``--max-epochs`` and ``--patience`` override the defaults.

Every fit is one CSV row (resumable: rows already in the CSV are skipped).
The summary has one row per strategy: mean test accuracy, agreement with
flex's pick (the same selection, or a test accuracy within 0.005 of flex's),
and the mean over scenarios of fit seconds relative to flex's fit in the same
scenario. It is printed and written between the result markers of the
markdown document (the rest of the document is left alone).

    python benchmarks/beyond.py                       # the full grid
    python benchmarks/beyond.py --quick               # conv4, 2 shifts, ratio 10
    python benchmarks/beyond.py --strategies flex halving
"""

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent

#: Strategy label -> FlexTuner parameters.
SPECS = {
    "flex": dict(strategy="flex"),
    "fast": dict(strategy="fast"),
    "faster": dict(strategy="faster"),
    "rgn-unit": dict(strategy="rgn-unit"),
    "auto-rgn": dict(strategy="auto-rgn"),
    "halving": dict(strategy="halving"),
    "flex, max_units=2": dict(strategy="flex", max_units=2),
    "flex, pixel_adapter=auto": dict(strategy="flex", pixel_adapter="auto"),
    # halving variants, for tuning its defaults (the default is m3f3)
    "halving-m1f2": dict(strategy="halving", halving_min_epochs=1, halving_factor=2),
    "halving-m2f2": dict(strategy="halving", halving_min_epochs=2, halving_factor=2),
    "halving-m3f2": dict(strategy="halving", halving_min_epochs=3, halving_factor=2),
    "halving-m4f2": dict(strategy="halving", halving_min_epochs=4, halving_factor=2),
    "halving-m2f3": dict(strategy="halving", halving_min_epochs=2, halving_factor=3),
    "halving-m3f3": dict(strategy="halving", halving_min_epochs=3, halving_factor=3),
    # flex again with another seed: how often flex agrees with itself
    "flex, random_state=1": dict(strategy="flex", random_state=1),
}
DEFAULT = ["flex", "fast", "faster", "rgn-unit", "auto-rgn", "halving", "flex, max_units=2",
           "flex, pixel_adapter=auto"]
NETS = ("conv4", "conv7")
GREY_SHIFTS = ("blur", "noise", "occlusion", "random_affine", "fixed_affine", "rotation",
               "scaling")
COLOUR_SHIFTS = ("colorspace", "mnistm")
RATIOS = (10, 40)
IMAGE_SIZE = 16
COLUMNS = ["net", "n_channels", "shift", "ratio", "strategy", "selected", "val_accuracy",
           "test_accuracy", "fit_seconds", "n_trainings", "n_epochs", "pretrained_test"]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def scenarios(nets, shifts, ratios):
    for net in nets:
        for shift in shifts:
            n_channels = 3 if shift in COLOUR_SHIFTS else 1
            for ratio in ratios:
                yield net, n_channels, shift, ratio


def describe(selected):
    return "+".join(selected) if isinstance(selected, tuple) else str(selected)


def run_scenario(net_name, n_channels, shift, ratio, labels, args, done, writer):
    from flexsk import FlexTuner
    from flexsk.datasets import make_digits_shift, subsample_per_class
    from flexsk.zoo import load_source_net

    net = load_source_net(net_name, n_channels=n_channels, image_size=IMAGE_SIZE)
    bunch = make_digits_shift(shift, image_size=IMAGE_SIZE, n_channels=n_channels,
                              random_state=0)
    pool = np.flatnonzero(bunch.split == "train")
    train = pool[subsample_per_class(bunch.target[pool], ratio, random_state=0)]
    val, test = (np.flatnonzero(bunch.split == part) for part in ("val", "test"))
    X, y = bunch.data, bunch.target
    pretrained_test = float(np.mean(net.predict(X[test]) == y[test]))
    for label in labels:
        key = (net_name, str(n_channels), shift, str(ratio), label)
        if key in done:
            continue
        params = dict(random_state=0)
        overrides = dict(max_epochs=args.max_epochs, patience=args.patience)
        params.update({k: v for k, v in overrides.items() if v is not None})
        params.update(SPECS[label])
        tuner = FlexTuner(net, **params)
        tuner.fit(X[train], y[train], X_val=X[val], y_val=y[val])
        row = dict(net=net_name, n_channels=n_channels, shift=shift, ratio=ratio,
                   strategy=label, selected=describe(tuner.selected_unit_),
                   val_accuracy=round(tuner.validation_scores_[tuner.selected_unit_], 4),
                   test_accuracy=round(float(tuner.score(X[test], y[test])), 4),
                   fit_seconds=round(tuner.fit_time_, 3),
                   n_trainings=len(tuner.n_epochs_),
                   n_epochs=sum(tuner.n_epochs_.values()),
                   pretrained_test=round(pretrained_test, 4))
        writer.writerow(row)
        done.add(key)
        print(f"{net_name} c{n_channels} {shift:13s} {ratio:3d} {label:26s} "
              f"{row['selected']:16s} test {row['test_accuracy']:.3f} "
              f"{row['fit_seconds']:7.2f}s", flush=True)


def read_rows(path):
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def summarize(rows, labels):
    """Markdown: the per-strategy table and the per-scenario picks."""
    by_scenario = {}
    for row in rows:
        scenario = (row["net"], row["n_channels"], row["shift"], row["ratio"])
        by_scenario.setdefault(scenario, {})[row["strategy"]] = row
    complete = {s: r for s, r in by_scenario.items() if all(label in r for label in labels)}
    lines = []
    if not complete or "flex" not in labels:
        return "No complete scenario yet (every strategy, flex included).\n"
    n = len(complete)
    lines.append(f"{n} scenarios, each run by every strategy.\n")
    lines.append("| strategy | mean test accuracy | Δ vs flex (points) | agreement with flex "
                 "| cost relative to flex (mean) | (median) | total fit seconds |")
    lines.append("|---|---|---|---|---|---|---|")
    for label in labels:
        accs, diffs, agree, ratios, seconds = [], [], 0, [], 0.0
        for runs in complete.values():
            flex, run = runs["flex"], runs[label]
            acc, flex_acc = float(run["test_accuracy"]), float(flex["test_accuracy"])
            accs.append(acc)
            diffs.append(acc - flex_acc)
            agree += (run["selected"] == flex["selected"]
                      or abs(acc - flex_acc) <= 0.005 + 1e-9)
            ratios.append(float(run["fit_seconds"]) / float(flex["fit_seconds"]))
            seconds += float(run["fit_seconds"])
        lines.append(f"| {label} | {np.mean(accs):.4f} | {100 * np.mean(diffs):+.2f} | "
                     f"{agree}/{n} ({100 * agree / n:.0f}%) | {np.mean(ratios):.2f} | "
                     f"{np.median(ratios):.2f} | {seconds:.0f} |")
    lines.append("")
    lines.append("Per scenario: the selection (test accuracy) of each strategy.\n")
    lines.append("| net | shift | ratio | pretrained | " + " | ".join(labels) + " |")
    lines.append("|---|---|---|---|" + "---|" * len(labels))
    for (net, n_channels, shift, ratio), runs in sorted(complete.items()):
        cells = [f"{runs[label]['selected']} ({float(runs[label]['test_accuracy']):.3f})"
                 for label in labels]
        pretrained = float(runs["flex"]["pretrained_test"])
        lines.append(f"| {net}-c{n_channels} | {shift} | {ratio} | {pretrained:.3f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_doc(path, command, table):
    block = f"{BEGIN}\n\nProduced by:\n\n```bash\n{command}\n```\n\n{table}\n{END}"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            path.write_text(head + block + tail)
            return
        path.write_text(text.rstrip() + "\n\n" + block + "\n")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Beyond the paper: measured\n\n" + block + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--strategies", nargs="+", default=DEFAULT, choices=list(SPECS))
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--shifts", nargs="+", default=list(GREY_SHIFTS + COLOUR_SHIFTS))
    parser.add_argument("--ratios", nargs="+", type=int, default=list(RATIOS))
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="default: the estimator's")
    parser.add_argument("--patience", type=int, default=None, help="default: the estimator's")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "beyond.csv")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "beyond.md")
    parser.add_argument("--no-doc", action="store_true", help="only print the summary")
    parser.add_argument("--quick", action="store_true",
                        help="conv4, blur and rotation, ratio 10: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.nets, args.shifts, args.ratios = ["conv4"], ["blur", "rotation"], [10]
    labels = list(dict.fromkeys(["flex"] + args.strategies))
    torch.set_num_threads(1)

    rows = read_rows(args.output)
    done = {(r["net"], r["n_channels"], r["shift"], r["ratio"], r["strategy"]) for r in rows}
    started = time.perf_counter()
    new_file = not args.output.exists()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new_file:
            writer.writeheader()
        for scenario in scenarios(args.nets, args.shifts, args.ratios):
            run_scenario(*scenario, labels, args, done, writer)
            f.flush()
    print(f"done in {time.perf_counter() - started:.0f}s", flush=True)

    wanted = {(net, str(c), shift, str(ratio))
              for net, c, shift, ratio in scenarios(args.nets, args.shifts, args.ratios)}
    rows = [r for r in read_rows(args.output)
            if (r["net"], r["n_channels"], r["shift"], r["ratio"]) in wanted]
    table = summarize(rows, labels)
    print(table)
    if not args.no_doc:
        command = "OMP_NUM_THREADS=1 python benchmarks/beyond.py " + " ".join(
            _quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        write_doc(args.doc, command.strip(), table)


def _quote(arg):
    return f'"{arg}"' if " " in arg or "," in arg or "=" in arg else arg


if __name__ == "__main__":
    main()
