"""Write the "choosing a strategy" table from the benchmark's measured results.

    python docs/make_strategy_table.py [--csv PATH] [--output PATH]

The docs build runs it (``docs/conf.py``), so the table always shows the
numbers of the results file it names. It reads the CSV written by
``flexsk bench``: ``docs/_static/bench/results.csv`` when it exists, else
``bench-results/results.csv``, and writes ``docs/generated/strategy_table.inc``
(reStructuredText, included by ``docs/user_guide/strategies.rst``).

Per strategy, over the runs where every strategy of the grid was fitted on the
same training set (same net, shift, ratio and repeat):

- mean test accuracy;
- how many scenarios (net x shift x ratio, mean over repeats) it is best or
  tied-best in (:func:`flexsk.bench.win_counts`);
- mean ``fit_seconds``, and that mean divided by flex's, per net (the number
  of units L differs: 4 for conv4, 7 for conv7);

next to the runtime complexity of the paper's Table 1.
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
CANDIDATES = [DOCS / "_static" / "bench" / "results.csv", ROOT / "bench-results" / "results.csv"]
OUTPUT = DOCS / "generated" / "strategy_table.inc"

#: Royer & Lampert (WACV 2020), Table 1; ft-fc (2) and ft-ss are not in it.
PAPER_COST = {
    "flex": r":math:`L E_{one} c_{one} + E_{all} c_{all}`",
    "fast": r":math:`E_{one} c_{one} + E_{all} c_{all}`",
    "faster": r":math:`E_{one} c_{one} + c_{all}`",
    "ft-fc-1": r":math:`E_{one} c_{one}`",
    "ft-fc-2": "(not in Table 1)",
    "ft-ss": "(not in Table 1)",
    "ft-all": r":math:`E_{all} c_{all}`",
}
LABELS = {"ft-fc-1": "ft-fc (1)", "ft-fc-2": "ft-fc (2)"}


def find_csv():
    for path in CANDIDATES:
        if path.exists():
            return path
    return None


def _relative(path):
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def _table(headers, rows):
    """A reStructuredText list-table."""
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [headers] + rows:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return "\n".join(lines)


def summarize(rows):
    """Per-strategy numbers over the complete (paired) runs; see the module docstring."""
    from flexsk.bench import STRATEGIES, win_counts

    by_run = defaultdict(dict)
    for row in rows:
        key = (row["net"], row["n_channels"], row["shift"], row["ratio"], row["repeat"])
        by_run[key][row["strategy"]] = row
    strategies = [s for s in STRATEGIES if any(s in run for run in by_run.values())]
    complete = {k: run for k, run in by_run.items() if all(s in run for s in strategies)}
    paired = [row for run in complete.values() for row in run.values()]
    n_scenarios, wins = win_counts(paired) if paired else (0, {})
    nets = list(dict.fromkeys(k[0] for k in complete))
    summary = {}
    for s in strategies:
        runs = [run[s] for run in complete.values()]
        seconds = {net: float(np.mean([r["fit_seconds"] for r in runs if r["net"] == net]))
                   for net in nets}
        summary[s] = dict(accuracy=float(np.mean([r["test_accuracy"] for r in runs])),
                          wins=wins.get(s, 0), seconds=seconds,
                          all_seconds=float(np.mean([r["fit_seconds"] for r in runs])))
    units = {net: len(next(r for run in complete.values() for r in run.values()
                           if r["net"] == net)["units"]) for net in nets}
    # The paper's E_one and E_all: epochs trained by flex's single-unit candidates and ft-all.
    epochs = defaultdict(lambda: {"one": [], "all": []})
    for run in complete.values():
        if "flex" in run and run["flex"].get("n_epochs"):
            for key, n in run["flex"]["n_epochs"].items():
                epochs[run["flex"]["net"]]["all" if key == "all" else "one"].append(n)
    epochs = {net: {k: float(np.mean(v)) if v else float("nan") for k, v in e.items()}
              for net, e in epochs.items()}
    return dict(strategies=strategies, summary=summary, n_runs=len(complete),
                n_scenarios=n_scenarios, nets=nets, units=units, epochs=epochs)


def render(csv_path, rows, config, timing=None):
    if not rows:
        return (f".. note::\n\n   ``{_relative(csv_path)}`` holds no finished runs yet: run "
                "``flexsk bench`` and rebuild the docs.\n")
    info = summarize(rows)
    if not info["n_runs"]:
        return (f".. note::\n\n   ``{_relative(csv_path)}`` holds no training set on which "
                "every strategy was fitted yet: let ``flexsk bench`` run on and rebuild the "
                "docs.\n")
    nets = info["nets"]
    flex = info["summary"].get("flex")
    headers = (["strategy", "cost (paper, Table 1)", "test accuracy",
                f"wins (of {info['n_scenarios']})", "fit (s)"]
               + [f"fit / flex, {net} (L = {info['units'][net]})" for net in nets])
    body = []
    for s in info["strategies"]:
        row = info["summary"][s]
        cells = [LABELS.get(s, s), PAPER_COST.get(s, ""), f"{row['accuracy']:.3f}",
                 str(row["wins"]), f"{row['all_seconds']:.2f}"]
        for net in nets:
            ratio = row["seconds"][net] / flex["seconds"][net] if flex else float("nan")
            cells.append(f"{ratio:.2f}")
        body.append(cells)
    grid = ""
    if config:
        from flexsk.bench import describe_config

        grid = f" The grid: {describe_config(config)}"
    threads = sorted({session["threads"] for session in timing or [] if "threads" in session})
    if threads:
        grid += (f" Fit times are wall-clock seconds with {' or '.join(map(str, threads))} "
                 f"torch thread(s) (``timing.json``).")
    epochs = "; ".join(
        f"{net}: :math:`E_{{one}}` = {e['one']:.1f}, :math:`E_{{all}}` = {e['all']:.1f}"
        for net, e in info["epochs"].items())
    return (
        f"Measured by ``flexsk bench`` in ``{_relative(csv_path)}``, over the "
        f"{info['n_runs']} training sets on which every strategy was fitted "
        f"({info['n_runs'] * len(info['strategies'])} fits; table written by "
        f"``python docs/make_strategy_table.py`` during the docs build).{grid}\n\n"
        + "Columns: mean test accuracy of the selection run's pick (the paper's "
        "protocol; the returned model is refitted on the training and validation data, "
        "see :doc:`/benchmarks`); scenarios in which the strategy is best or "
        "tied-best; mean fit seconds (the whole ``fit``: selection and refit); mean fit "
        "seconds divided by flex's on the same net. ft-fc (1) and ft-fc (2) are "
        "``strategy=\"ft-fc\"`` with ``n_fc_units=1`` and ``2``.\n\n"
        + _table(headers, body) + "\n\n"
        f"Mean epochs trained (early stopping included) by flex's single-unit "
        f"candidates and by ft-all, the paper's :math:`E_{{one}}` and "
        f":math:`E_{{all}}`: {epochs}.\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=None,
                        help="results CSV of flexsk bench (default: docs/_static/bench/"
                        "results.csv, else bench-results/results.csv)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    csv_path = args.csv or find_csv()
    if csv_path is None:
        text = (".. note::\n\n   No benchmark results found (looked for "
                + ", ".join(f"``{_relative(p)}``" for p in CANDIDATES)
                + "). Run ``flexsk bench`` and rebuild the docs.\n")
    else:
        from flexsk.bench import read_results

        config_path = csv_path.parent / "config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else None
        timing_path = csv_path.parent / "timing.json"
        timing = json.loads(timing_path.read_text()) if timing_path.exists() else None
        text = render(csv_path, read_results(csv_path), config, timing)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if not args.output.exists() or args.output.read_text() != text:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
