"""The benchmark of ``flexsk bench``: the paper's grid on embedded data, and its reports.

The grid is source nets x domain shifts x training-set sizes ("ratios",
images per class) x strategies x repeats, as in Section 5 of Royer &
Lampert (WACV 2020):

* source nets: the zoo's ``conv4`` (the paper's 4-unit MNIST net) and
  ``conv7`` (its 7-unit CIFAR net), one-channel for the grey shifts and
  three-channel for the colour shifts (``mnistm``, ``colorspace``);
* shifts: :data:`flexsk.datasets.SHIFTS`, each with its default parameters
  and ``random_state=0``;
* ratios 2, 10 and 40 images per class (40 is the whole training pool),
  drawn with :func:`~flexsk.datasets.subsample_per_class` and
  ``random_state=repeat``, so subsets are nested across ratios;
* strategies flex, fast, faster, ft-fc (1), ft-fc (2), ft-ss and ft-all,
  each fitted with ``keep_candidates=True`` and ``random_state=repeat`` on the
  fixed validation split, and scored on the fixed test split.

Every run is one row of a tidy CSV (:data:`COLUMNS`), appended and flushed as
soon as it finishes. A restart reads the finished rows and skips them; the
grid's settings live in ``config.json`` next to the CSV, and a run with other
settings refuses to append to it.

:func:`write_reports` turns the CSV into the paper's tables (Table 3: mean
test accuracy per shift and ratio, Table 4: retrieval mAP@10) and figures
(Figure 1: per-unit validation and test accuracy; Figure 2: which unit each
method picks), drawn by :mod:`flexsk.plot`.
"""

import csv
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

__all__ = [
    "COLUMNS",
    "STRATEGIES",
    "BenchError",
    "BenchConfigError",
    "make_config",
    "plan_runs",
    "run_bench",
    "read_results",
    "mean_accuracies",
    "bold_cells",
    "win_counts",
    "table3_markdown",
    "summary_line",
    "mean_accuracy_markdown",
    "versus_baselines_markdown",
    "win_counts_markdown",
    "picks_markdown",
    "selection_markdown",
    "retrieval_markdown",
    "write_reports",
]

#: Version of the bench protocol; part of the config, so that results made by
#: another protocol are never resumed.
BENCH_VERSION = 1

#: Strategy name (as written in the CSV) -> FlexTuner parameters.
STRATEGIES = {
    "flex": {"strategy": "flex"},
    "fast": {"strategy": "fast"},
    "faster": {"strategy": "faster"},
    "ft-fc-1": {"strategy": "ft-fc", "n_fc_units": 1},
    "ft-fc-2": {"strategy": "ft-fc", "n_fc_units": 2},
    "ft-ss": {"strategy": "ft-ss"},
    "ft-all": {"strategy": "ft-all"},
}
#: Column headers of the tables.
LABELS = {"flex": "flex", "fast": "fast", "faster": "faster", "ft-fc-1": "ft-fc (1)",
          "ft-fc-2": "ft-fc (2)", "ft-ss": "ft-ss", "ft-all": "ft-all"}
FLEX_VARIANTS = ("flex", "fast", "faster")
BASELINES = ("ft-fc-1", "ft-fc-2", "ft-ss", "ft-all")
#: Strategies whose runs get a retrieval mAP@10 (Table 4).
RETRIEVAL_STRATEGIES = ("ft-fc-1", "ft-all", "flex")
#: Shifts that need the three-channel nets.
COLOUR_SHIFTS = ("mnistm", "colorspace")
#: Two mean accuracies within this of each other are tied (win counts).
TIE_TOLERANCE = 0.0005
#: The paper's Section 5.2 counts, for the summary line.
PAPER_WINS = "flex 60/72, fast-flex 41/72, ft-all 26/72"

MAP_K = 10
SHIFT_RANDOM_STATE = 0
DEFAULTS = dict(nets=("conv4", "conv7"), shifts=None, ratios=(2, 10, 40), repeats=5,
                other_repeats=1, strategies=tuple(STRATEGIES), max_epochs=100, patience=10,
                image_size=16)
#: ``--quick``: a subset that runs in a minute or two on 2 cores.
QUICK = dict(nets=("conv4",), shifts=("blur", "rotation", "mnistm"), ratios=(2, 10),
             repeats=2, other_repeats=1)
DEFAULT_OUTPUT = "bench-results"
QUICK_OUTPUT = "bench-results/quick"

RESULTS_CSV = "results.csv"
CONFIG_JSON = "config.json"
TIMING_JSON = "timing.json"

#: Columns of the results CSV, one row per (net, n_channels, shift, ratio, repeat, strategy).
COLUMNS = [
    "net", "n_channels", "shift", "ratio", "repeat", "strategy",
    "n_train", "image_size", "max_epochs", "patience", "lr", "batch_size",
    "test_accuracy", "source_accuracy", "selected_unit", "units",
    "proxy_scores", "validation_scores", "candidate_test_scores", "n_epochs",
    "fit_seconds", "map_at_10", "source_map_at_10",
]
KEY_COLUMNS = ("net", "n_channels", "shift", "ratio", "repeat", "strategy")
_INT_COLUMNS = {"n_channels", "ratio", "repeat", "n_train", "image_size", "max_epochs",
                "patience", "batch_size"}
_FLOAT_COLUMNS = {"lr", "test_accuracy", "source_accuracy", "fit_seconds", "map_at_10",
                  "source_map_at_10"}
_JSON_COLUMNS = {"units", "proxy_scores", "validation_scores", "candidate_test_scores",
                 "n_epochs"}

MATPLOTLIB_HINT = 'pip install "flexsk[plot]"'


class BenchError(ValueError):
    """A bench request that cannot be carried out (bad option, no results).

    Examples
    --------
    >>> from flexsk.bench import BenchError, write_reports
    >>> import tempfile
    >>> try:
    ...     write_reports(tempfile.mkdtemp(), log=None)
    ... except BenchError as error:
    ...     print("no results")
    no results
    """


class BenchConfigError(BenchError):
    """The output directory holds results made with another configuration.

    :func:`run_bench` raises it rather than mixing the rows of two grids in
    one ``results.csv``; use another ``output`` directory.

    Examples
    --------
    >>> import tempfile
    >>> from flexsk.bench import BenchConfigError, make_config, run_bench
    >>> output = tempfile.mkdtemp()
    >>> small = make_config(nets=["conv4"], shifts=["blur"], ratios=[2], repeats=1,
    ...                     strategies=["ft-fc-1"], max_epochs=1)
    >>> run_bench(small, output, progress=False, log=None)
    1
    >>> try:
    ...     run_bench(dict(small, max_epochs=2), output, progress=False, log=None)
    ... except BenchConfigError:
    ...     print("refused")
    refused
    """


# ----------------------------------------------------------------------------
# Configuration and plan
# ----------------------------------------------------------------------------

def make_config(*, nets=None, shifts=None, ratios=None, repeats=None, other_repeats=None,
                strategies=None, max_epochs=None, patience=None, image_size=None,
                quick=False):
    """The bench configuration: the grid and the training settings, as a JSON-able dict.

    Parameters
    ----------
    nets, shifts, ratios, strategies : sequence, optional
        The grid. Defaults: both zoo nets, every shift of
        :data:`flexsk.datasets.SHIFTS`, ratios 2, 10 and 40 images per class,
        every strategy of :data:`STRATEGIES` (``--quick``: conv4, blur,
        rotation and mnistm, ratios 2 and 10).
    repeats : int or dict, optional
        Repeats of the scarcest ratio (default 5; ``--quick`` 2), or a dict
        ratio -> repeats.
    other_repeats : int, optional
        Repeats of every other ratio (default 1).
    max_epochs, patience, image_size : int, optional
        Defaults 100, 10 and 16.
    quick : bool, default=False
        Use the ``--quick`` grid for whatever is not given.

    Returns
    -------
    dict
        The grid and settings, as :func:`run_bench` takes them and
        ``config.json`` stores them; ``repeats`` is keyed by the ratio as a
        string.

    Examples
    --------
    >>> from flexsk.bench import make_config
    >>> config = make_config(nets=["conv4"], shifts=["blur", "rotation"], ratios=[2, 10],
    ...                      repeats=3, strategies=["flex", "ft-all"])
    >>> config["repeats"], config["max_epochs"]
    ({'2': 3, '10': 1}, 100)
    """
    from .datasets import SHIFTS
    from .zoo import ARCHS

    base = dict(DEFAULTS, shifts=SHIFTS)
    if quick:
        base.update(QUICK)
    given = dict(nets=nets, shifts=shifts, ratios=ratios, repeats=repeats,
                 other_repeats=other_repeats, strategies=strategies, max_epochs=max_epochs,
                 patience=patience, image_size=image_size)
    opts = {k: (base[k] if v is None else v) for k, v in given.items()}

    nets = _unique(opts["nets"], ARCHS, "net")
    shifts = _unique(opts["shifts"], SHIFTS, "shift")
    strategies = _unique(opts["strategies"], tuple(STRATEGIES), "strategy")
    ratios = sorted(set(int(r) for r in opts["ratios"]))
    if not ratios or ratios[0] < 1 or ratios[-1] > 40:
        raise ValueError(f"ratios must be images per class between 1 and 40 (the training "
                         f"pool), got {opts['ratios']!r}.")
    if isinstance(opts["repeats"], dict):
        repeats = {int(r): int(n) for r, n in opts["repeats"].items()}
        unused = sorted(set(repeats) - set(ratios))
        if unused:
            raise ValueError(f"repeats are given for ratios {unused} that are not in the grid's "
                             f"ratios {ratios}.")
        missing = [r for r in ratios if r not in repeats]
        for r in missing:
            repeats[r] = int(opts["other_repeats"])
    else:
        repeats = {r: int(opts["other_repeats"]) for r in ratios}
        repeats[ratios[0]] = int(opts["repeats"])
    repeats = {str(r): repeats[r] for r in ratios}
    if min(repeats.values()) < 1:
        raise ValueError(f"every ratio needs at least 1 repeat, got {repeats}.")
    for name in ("max_epochs", "patience"):
        if int(opts[name]) < 1:
            raise ValueError(f"{name} must be >= 1, got {opts[name]!r}.")
    image_size = int(opts["image_size"])
    if image_size < 8 or image_size % 8:
        raise ValueError(f"image_size must be a multiple of 8, got {image_size}.")
    return {
        "bench_version": BENCH_VERSION,
        "nets": nets,
        "shifts": shifts,
        "ratios": ratios,
        "repeats": repeats,
        "strategies": strategies,
        "max_epochs": int(opts["max_epochs"]),
        "patience": int(opts["patience"]),
        "image_size": image_size,
        "lr": "zoo net (1e-3)",
        "batch_size": "zoo net (32)",
        "shift_random_state": SHIFT_RANDOM_STATE,
        "map_k": MAP_K,
    }


def _unique(values, allowed, what):
    values = list(dict.fromkeys(values))
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ValueError(f"unknown {what}(s) {bad or values!r}; choose from {list(allowed)}.")
    return values


def n_channels_of(shift):
    """The zoo nets' input channels for ``shift``: 3 for colour shifts, else 1."""
    return 3 if shift in COLOUR_SHIFTS else 1


def plan_runs(config):
    """Every run of the grid, as dicts of the key columns, in execution order.

    Shifts are the outer loop and nets the next one, so that the fast conv4
    and the slower conv7 runs alternate and the progress bar's ETA is fair.

    Parameters
    ----------
    config : dict
        From :func:`make_config`.

    Returns
    -------
    list of dict
        One dict per run: ``net``, ``n_channels``, ``shift``, ``ratio``,
        ``repeat`` and ``strategy``.

    Examples
    --------
    >>> from flexsk.bench import make_config, plan_runs
    >>> config = make_config(nets=["conv4"], shifts=["blur"], ratios=[2], repeats=2,
    ...                      strategies=["flex", "ft-all"])
    >>> [(run["repeat"], run["strategy"]) for run in plan_runs(config)]
    [(0, 'flex'), (0, 'ft-all'), (1, 'flex'), (1, 'ft-all')]
    """
    runs = []
    for shift in config["shifts"]:
        for net in config["nets"]:
            for ratio in config["ratios"]:
                for repeat in range(config["repeats"][str(ratio)]):
                    for strategy in config["strategies"]:
                        runs.append(dict(net=net, n_channels=n_channels_of(shift),
                                         shift=shift, ratio=ratio, repeat=repeat,
                                         strategy=strategy))
    return runs


def run_key(row):
    """The identity of a run: its key columns, typed."""
    return (str(row["net"]), int(row["n_channels"]), str(row["shift"]), int(row["ratio"]),
            int(row["repeat"]), str(row["strategy"]))


def describe_config(config):
    """One paragraph stating the grid and the settings."""
    repeats = ", ".join(f"{n} at ratio {r}" for r, n in config["repeats"].items())
    return (f"nets {', '.join(config['nets'])} (3-channel for {', '.join(COLOUR_SHIFTS)}); "
            f"shifts {', '.join(config['shifts'])}; ratios {config['ratios']} images per "
            f"class; repeats: {repeats}; strategies {', '.join(config['strategies'])}; "
            f"max_epochs={config['max_epochs']}, patience={config['patience']}, "
            f"image_size={config['image_size']}, lr {config['lr']}, batch size "
            f"{config['batch_size']}, shift random_state={config['shift_random_state']}.")


# ----------------------------------------------------------------------------
# The results file
# ----------------------------------------------------------------------------

def _parse_value(column, value):
    if not isinstance(value, str):
        return value
    if column in _INT_COLUMNS:
        return int(value) if value != "" else None
    if column in _FLOAT_COLUMNS:
        return float(value) if value != "" else None
    if column in _JSON_COLUMNS:
        return json.loads(value) if value != "" else None
    return value


def parse_row(row):
    """A results row with typed values (ints, floats, decoded JSON); idempotent."""
    return {k: _parse_value(k, v) for k, v in row.items()}


def read_results(path):
    """Read a results CSV written by :func:`run_bench`.

    Parameters
    ----------
    path : str or path-like
        The CSV, or the directory holding ``results.csv``.

    Returns
    -------
    list of dict
        One dict per row, with typed values: ints, floats (None where empty)
        and decoded JSON (dicts keyed by unit name; ``"fc1+fc2"`` for the
        pair of ft-fc (2)).

    Examples
    --------
    >>> from flexsk.bench import read_results
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> flex = [row for row in rows if row["strategy"] == "flex"]  # doctest: +SKIP
    >>> flex[0]["validation_scores"]  # every candidate's accuracy  # doctest: +SKIP
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_CSV
    with open(path, newline="") as f:
        return [parse_row(row) for row in csv.DictReader(f) if _complete(row)]


def _complete(row):
    return None not in row and all(row.get(k) not in (None, "") for k in KEY_COLUMNS)


def _repair_tail(path):
    """Drop a partly written last line (a run killed mid-write) from the CSV."""
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def _finished_keys(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != COLUMNS:
            raise BenchConfigError(
                f"{path} has columns {reader.fieldnames}, not those of this version of "
                f"flexsk bench. Pass --output NEWDIR to start a new results file.")
        return {run_key(row) for row in reader if _complete(row)}


def _check_config(output, config):
    """Write config.json, or check that the one there matches ``config``."""
    csv_path, config_path = output / RESULTS_CSV, output / CONFIG_JSON
    if config_path.exists():
        stored = json.loads(config_path.read_text())
        if stored != config:
            diffs = [f"{k}: {stored.get(k)!r} there, {config.get(k)!r} now"
                     for k in sorted(set(stored) | set(config)) if stored.get(k) != config.get(k)]
            raise BenchConfigError(
                f"{csv_path} was made with another bench configuration ("
                + "; ".join(diffs) + "). Appending would mix the two grids: pass "
                "--output NEWDIR to start a new results file, or repeat the original "
                "options to resume it.")
        return
    if csv_path.exists() and csv_path.stat().st_size > 0:
        raise BenchConfigError(
            f"{csv_path} exists but {config_path} does not, so its configuration is "
            f"unknown. Pass --output NEWDIR to start a new results file.")
    _write_json(config_path, config)


def _write_json(path, data):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _key_name(key):
    return "+".join(key) if isinstance(key, tuple) else str(key)


def _json(mapping):
    return json.dumps({_key_name(k): v for k, v in mapping.items()})


# ----------------------------------------------------------------------------
# Running the grid
# ----------------------------------------------------------------------------

class _Scenario:
    """Data and source net of one (net, n_channels, shift), loaded once."""

    def __init__(self, net_name, n_channels, shift, image_size, nets):
        from .datasets import load_digits_source, make_digits_shift
        from .zoo import load_source_net

        key = (net_name, n_channels)
        if key not in nets:
            nets[key] = load_source_net(net_name, n_channels=n_channels,
                                        image_size=image_size)
        self.net = nets[key]
        bunch = make_digits_shift(shift, image_size=image_size, n_channels=n_channels,
                                  random_state=SHIFT_RANDOM_STATE)
        self.X, self.y = bunch.data, bunch.target
        self.pool = np.flatnonzero(bunch.split == "train")
        self.val = np.flatnonzero(bunch.split == "val")
        self.test = np.flatnonzero(bunch.split == "test")
        self.X_source, self.y_source = load_digits_source(
            split="test", image_size=image_size, n_channels=n_channels, return_X_y=True)
        X_test, y_test = self.X[self.test], self.y[self.test]
        self.source_accuracy = float(np.mean(self.net.predict(X_test) == y_test))

    def train(self, ratio, repeat):
        from .datasets import subsample_per_class

        return self.pool[subsample_per_class(self.y[self.pool], ratio, random_state=repeat)]


def _run_one(run, scenario, config):
    """Fit one strategy on one training subset; the CSV row."""
    from . import FlexTuner
    from .metrics import map_at_k

    X, y = scenario.X, scenario.y
    train, val, test = scenario.train(run["ratio"], run["repeat"]), scenario.val, scenario.test
    net = scenario.net
    tuner = FlexTuner(net, max_epochs=config["max_epochs"], patience=config["patience"],
                      keep_candidates=True, random_state=run["repeat"],
                      **STRATEGIES[run["strategy"]])
    tuner.fit(X[train], y[train], X_val=X[val], y_val=y[val])
    X_test, y_test = X[test], y[test]
    row = dict(run, n_train=len(train), image_size=config["image_size"],
               max_epochs=config["max_epochs"], patience=config["patience"], lr=net.lr,
               batch_size=net.batch_size,
               test_accuracy=float(tuner.score(X_test, y_test)),
               source_accuracy=scenario.source_accuracy,
               selected_unit=_key_name(tuner.selected_unit_),
               units=json.dumps(tuner.units_),
               proxy_scores=_json(tuner.proxy_scores_),
               validation_scores=_json(tuner.validation_scores_),
               candidate_test_scores=_json(tuner.score_candidates(X_test, y_test)),
               n_epochs=_json(tuner.n_epochs_),
               fit_seconds=round(tuner.fit_time_, 4), map_at_10="", source_map_at_10="")
    if run["strategy"] in RETRIEVAL_STRATEGIES:
        gallery = tuner.pretrained_transform(scenario.X_source)
        row["map_at_10"] = map_at_k(tuner.transform(X_test), y_test, gallery,
                                    scenario.y_source, k=config["map_k"])
        row["source_map_at_10"] = map_at_k(tuner.pretrained_transform(X_test), y_test,
                                           gallery, scenario.y_source, k=config["map_k"])
    return row


def run_bench(config, output, *, threads=1, progress=True, log=print):
    """Run every unfinished run of the grid, appending one CSV row per run.

    Parameters
    ----------
    config : dict
        From :func:`make_config`.
    output : str or path-like
        Directory of ``results.csv``, ``config.json`` and ``timing.json``;
        created if needed.
    threads : int, default=1
        torch intra-op threads for the duration of the run (restored after).
    progress : bool, default=True
        Show a tqdm progress bar over runs, with an ETA.
    log : callable or None, default=print
        Called with a line of text at the start and the end; None is silent.

    Returns
    -------
    int
        The number of runs done now (finished rows are skipped).

    Raises
    ------
    BenchConfigError
        If ``output`` holds results made with another configuration.

    Examples
    --------
    >>> import tempfile
    >>> from flexsk.bench import make_config, read_results, run_bench
    >>> config = make_config(nets=["conv4"], shifts=["blur"], ratios=[2], repeats=1,
    ...                      strategies=["fast", "ft-fc-1"], max_epochs=2, patience=1)
    >>> output = tempfile.mkdtemp()
    >>> run_bench(config, output, progress=False, log=None)
    2
    >>> run_bench(config, output, progress=False, log=None)  # finished runs are skipped
    0
    >>> [(row["strategy"], row["n_train"]) for row in read_results(output)]
    [('fast', 20), ('ft-fc-1', 20)]
    """
    import torch
    from tqdm.auto import tqdm

    log = log or (lambda *a, **k: None)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    _check_config(output, config)
    csv_path = output / RESULTS_CSV
    new_file = not csv_path.exists() or csv_path.stat().st_size == 0
    done = set()
    if not new_file:
        _repair_tail(csv_path)
        done = _finished_keys(csv_path)
    runs = plan_runs(config)
    pending = [run for run in runs if run_key(run) not in done]
    log(f"flexsk bench: {describe_config(config)}")
    log(f"{len(runs)} runs in the grid, {len(runs) - len(pending)} already in {csv_path}, "
        f"{len(pending)} to do ({threads} torch thread(s)).")

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    started, n_done = time.perf_counter(), 0
    nets, scenario, scenario_key = {}, None, None
    try:
        with open(csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            if new_file:
                writer.writeheader()
                f.flush()
            bar = tqdm(pending, desc="flexsk bench", unit="run", disable=not progress,
                       file=sys.stderr, mininterval=1.0, smoothing=0.05)
            for run in bar:
                key = (run["net"], run["n_channels"], run["shift"])
                if key != scenario_key:
                    scenario = _Scenario(*key, config["image_size"], nets)
                    scenario_key = key
                bar.set_postfix_str(f"{run['net']} {run['shift']} r{run['ratio']} "
                                    f"#{run['repeat']} {run['strategy']}", refresh=False)
                row = _run_one(run, scenario, config)
                writer.writerow(row)
                f.flush()
                os.fsync(f.fileno())
                n_done += 1
            bar.close()
    finally:
        torch.set_num_threads(previous_threads)
        _record_timing(output, started, n_done, threads, complete=n_done == len(pending))
    log(f"{n_done} runs in {time.perf_counter() - started:.0f} s; results in {csv_path}.")
    return n_done


def _record_timing(output, started, n_done, threads, complete):
    path = output / TIMING_JSON
    sessions = json.loads(path.read_text()) if path.exists() else []
    sessions.append(dict(finished=time.strftime("%Y-%m-%d %H:%M:%S"),
                         wall_seconds=round(time.perf_counter() - started, 1),
                         runs=n_done, threads=threads, completed_grid=complete))
    _write_json(path, sessions)


# ----------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------

def _scenario(row):
    return (row["net"], row["n_channels"], row["shift"], row["ratio"])


def _ordered(keys, rows):
    """Scenario keys sorted by first appearance of net and shift, then ratio."""
    nets = list(dict.fromkeys(r["net"] for r in rows))
    shifts = list(dict.fromkeys(r["shift"] for r in rows))
    return sorted(keys, key=lambda k: (nets.index(k[0]), shifts.index(k[2]), k[1], k[3]))


def mean_accuracies(rows, field="test_accuracy"):
    """Mean of ``field`` over repeats, per scenario and strategy.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed).
    field : str, default="test_accuracy"
        The column to average, e.g. ``"map_at_10"``.

    Returns
    -------
    dict
        ``(net, n_channels, shift, ratio) -> {strategy: mean}``, scenarios in
        table order; rows whose ``field`` is empty are left out.

    Examples
    --------
    >>> from flexsk.bench import mean_accuracies
    >>> rows = [dict(net="conv4", n_channels=1, shift="blur", ratio=2, repeat=repeat,
    ...              strategy=strategy, test_accuracy=accuracy)
    ...         for repeat, strategy, accuracy in [(0, "flex", 0.875), (1, "flex", 0.825),
    ...                                            (0, "ft-all", 0.75), (1, "ft-all", 0.85)]]
    >>> mean_accuracies(rows)
    {('conv4', 1, 'blur', 2): {'flex': 0.85, 'ft-all': 0.8}}
    """
    rows = [parse_row(r) for r in rows]
    groups = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row.get(field) is not None:
            groups[_scenario(row)][row["strategy"]].append(row[field])
    return {key: {s: float(np.mean(v)) for s, v in groups[key].items()}
            for key in _ordered(groups, rows)}


def bold_cells(means):
    """The flex variants whose mean is strictly greater than every baseline's.

    Parameters
    ----------
    means : dict
        Strategy -> mean accuracy of one scenario.

    Returns
    -------
    set of str
        Empty when the scenario has no baseline.

    Examples
    --------
    >>> from flexsk.bench import bold_cells
    >>> sorted(bold_cells({"flex": 0.91, "fast": 0.90, "faster": 0.85, "ft-all": 0.90}))
    ['flex']
    """
    baselines = [means[b] for b in BASELINES if b in means]
    if not baselines:
        return set()
    best = max(baselines)
    return {s for s in FLEX_VARIANTS if s in means and means[s] > best + 1e-12}


def win_counts(rows, tol=TIE_TOLERANCE, field="test_accuracy"):
    """How often each strategy is best or tied-best, over scenarios.

    A scenario is a (net, shift, ratio); a strategy is best or tied-best when
    its mean over repeats is within ``tol`` of the scenario's best mean.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed).
    tol : float, default=TIE_TOLERANCE
        Means within ``tol`` of the best are tied with it.
    field : str, default="test_accuracy"
        The column compared.

    Returns
    -------
    n_scenarios : int
    counts : dict
        Strategy -> number of scenarios where it is best or tied-best.

    Examples
    --------
    >>> from flexsk.bench import win_counts
    >>> rows = [dict(net="conv4", n_channels=1, shift="blur", ratio=2, repeat=0,
    ...              strategy=strategy, test_accuracy=accuracy)
    ...         for strategy, accuracy in [("flex", 0.85), ("fast", 0.85), ("ft-all", 0.80)]]
    >>> win_counts(rows)
    (1, {'flex': 1, 'fast': 1, 'ft-all': 0})
    """
    means = mean_accuracies(rows, field)
    counts = Counter()
    for scenario in means.values():
        best = max(scenario.values())
        counts.update(s for s, m in scenario.items() if m >= best - tol - 1e-12)
    strategies = _strategies_in(rows)
    return len(means), {s: counts.get(s, 0) for s in strategies}


def _strategies_in(rows):
    present = {parse_row(r)["strategy"] for r in rows}
    return [s for s in STRATEGIES if s in present] + sorted(present - set(STRATEGIES))


def _label(strategy):
    return LABELS.get(strategy, strategy)


def _format_table(headers, rows):
    from .cli import format_table

    return format_table(headers, rows)


def _source_values(rows, field):
    """Scenario (without ratio) -> mean of ``field``, e.g. the source accuracy."""
    values = defaultdict(list)
    for row in map(parse_row, rows):
        if row.get(field) is not None:
            values[_scenario(row)[:3]].append(row[field])
    return {k: float(np.mean(v)) for k, v in values.items()}


def _repeats_of(rows):
    counts = defaultdict(set)
    for row in map(parse_row, rows):
        counts[row["ratio"]].add(row["repeat"])
    return {ratio: len(reps) for ratio, reps in counts.items()}


def table3_markdown(rows, *, digits=3):
    """Table 3 style: mean test accuracy per shift and ratio, one table per net.

    The first columns give the ratio (images per class) and the target shift
    with, in parentheses, the source net's accuracy on the target test set;
    then one column per strategy. A flex variant's cell is bold when its mean
    is strictly greater than every baseline's (ft-fc (1), ft-fc (2), ft-ss,
    ft-all) in that row.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    digits : int, default=3
        Decimals shown.

    Returns
    -------
    str
        Markdown.

    Examples
    --------
    >>> from flexsk.bench import read_results, table3_markdown
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(table3_markdown(rows))  # doctest: +SKIP
    """
    rows = [parse_row(r) for r in rows]
    means = mean_accuracies(rows)
    source = _source_values(rows, "source_accuracy")
    strategies = _strategies_in(rows)
    repeats = _repeats_of(rows)
    parts = []
    for net in dict.fromkeys(k[0] for k in means):
        body = []
        for key, scenario in means.items():
            if key[0] != net:
                continue
            cells = _cells(scenario, strategies, bold_cells(scenario), digits)
            shift = key[2] if key[1] == 1 else f"{key[2]} (3ch)"
            src = source.get(key[:3])
            target = f"{shift} ({src:.2f})" if src is not None else shift
            body.append([f"{key[3]} ({repeats.get(key[3], 1)}x)", target] + cells)
        parts.append(f"**{net}**\n\n" + _format_table(
            ["ratio", "target (source acc.)"] + [_label(s) for s in strategies], body))
    return "\n\n".join(parts) + "\n"


def _cells(scenario, strategies, bold, digits):
    """A table row's cells: each strategy's mean, bold if in ``bold``, blank if absent."""
    cells = []
    for s in strategies:
        if s not in scenario:
            cells.append("")
            continue
        text = f"{scenario[s]:.{digits}f}"
        cells.append(f"**{text}**" if s in bold else text)
    return cells


def summary_line(rows, tol=TIE_TOLERANCE):
    """The paper's summary: how often each method is best or tied-best.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    tol : float, default=TIE_TOLERANCE
        Means within ``tol`` of the best are tied with it.

    Returns
    -------
    str
        One sentence, with the paper's counts for comparison.

    See Also
    --------
    win_counts : The counts themselves.

    Examples
    --------
    >>> from flexsk.bench import read_results, summary_line
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(summary_line(rows))  # doctest: +SKIP
    """
    n, counts = win_counts(rows, tol)
    wins = ", ".join(f"{_label(s)} {c}/{n}" for s, c in counts.items())
    return (f"Out of {n} scenarios (net x shift x ratio, mean over repeats), best or "
            f"tied-best (within {tol} of the best): {wins}. The paper reports "
            f"{PAPER_WINS}.")


def mean_accuracy_markdown(rows, *, digits=3):
    """Mean test accuracy of each strategy over all scenarios, and its win count.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    digits : int, default=3
        Decimals shown.

    Returns
    -------
    str
        A markdown table: one column per strategy; the mean over the
        scenarios where every strategy ran, and the win count.

    Examples
    --------
    >>> from flexsk.bench import read_results, mean_accuracy_markdown
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(mean_accuracy_markdown(rows))  # doctest: +SKIP
    """
    means = mean_accuracies(rows)
    n, counts = win_counts(rows)
    strategies = list(counts)
    complete = [m for m in means.values() if all(s in m for s in strategies)]
    avg = [f"{np.mean([m[s] for m in complete]):.{digits}f}" for s in strategies]
    return _format_table(
        [""] + [_label(s) for s in strategies],
        [[f"mean test accuracy over {len(complete)} scenarios"] + avg,
         [f"best or tied-best (of {n})"] + [str(counts[s]) for s in strategies]]) + "\n"


def versus_baselines_markdown(rows, tol=TIE_TOLERANCE, *, digits=3):
    """Each flex variant against the best baseline of each scenario.

    Counts the scenarios where the variant's mean is above the best baseline's
    by more than ``tol``, within ``tol`` of it, or below it by more than
    ``tol``, and gives the mean difference.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    tol : float, default=TIE_TOLERANCE
        Means within ``tol`` of the best are tied with it.
    digits : int, default=3
        Decimals shown.

    Returns
    -------
    str
        A markdown table, one row per flex variant.

    Examples
    --------
    >>> from flexsk.bench import read_results, versus_baselines_markdown
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(versus_baselines_markdown(rows))  # doctest: +SKIP
    """
    means = mean_accuracies(rows)
    body = []
    for s in FLEX_VARIANTS:
        diffs = [m[s] - max(m[b] for b in BASELINES if b in m) for m in means.values()
                 if s in m and any(b in m for b in BASELINES)]
        if not diffs:
            continue
        diffs = np.array(diffs)
        body.append([_label(s), str(int(np.sum(diffs > tol))),
                     str(int(np.sum(np.abs(diffs) <= tol))), str(int(np.sum(diffs < -tol))),
                     f"{diffs.mean():+.{digits}f}"])
    return _format_table(["vs. the best baseline", "above", "tied", "below",
                          "mean difference"], body) + "\n"


def picks_markdown(rows, strategy="flex"):
    """How often ``strategy`` returns each candidate, per net and ratio (runs counted).

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    strategy : str, default="flex"
        The strategy whose picks are counted.

    Returns
    -------
    str
        A markdown table, one row per net and ratio.

    Examples
    --------
    >>> from flexsk.bench import read_results, picks_markdown
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(picks_markdown(rows))  # doctest: +SKIP
    """
    rows = [parse_row(r) for r in rows if parse_row(r)["strategy"] == strategy]
    body = []
    for net in dict.fromkeys(r["net"] for r in rows):
        mine = [r for r in rows if r["net"] == net]
        keys = list(mine[0]["units"]) + ["all"]
        for ratio in sorted({r["ratio"] for r in mine}):
            picks = Counter(r["selected_unit"] for r in mine if r["ratio"] == ratio)
            cells = ", ".join(f"{k} {picks[k]}" for k in keys if picks[k])
            body.append([net, str(ratio), str(sum(picks.values())), cells])
    return _format_table(["net", "ratio", "runs", f"units {strategy} returns (runs)"],
                         body) + "\n"


def win_counts_markdown(rows, tol=TIE_TOLERANCE):
    """Win counts (best or tied-best) per ratio and over all ratios, as a markdown table.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    tol : float, default=TIE_TOLERANCE
        Means within ``tol`` of the best are tied with it.

    Returns
    -------
    str
        A markdown table: one row per ratio and one over all ratios.

    See Also
    --------
    win_counts : The counts over all scenarios.

    Examples
    --------
    >>> from flexsk.bench import read_results, win_counts_markdown
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(win_counts_markdown(rows))  # doctest: +SKIP
    """
    rows = [parse_row(r) for r in rows]
    strategies = _strategies_in(rows)
    body = []
    for ratio in sorted({r["ratio"] for r in rows}):
        n, counts = win_counts([r for r in rows if r["ratio"] == ratio], tol)
        body.append([f"{ratio} per class"] + [f"{counts.get(s, 0)}/{n}" for s in strategies])
    n, counts = win_counts(rows, tol)
    body.append(["all ratios"] + [f"{counts[s]}/{n}" for s in strategies])
    return _format_table(["best or tied-best"] + [_label(s) for s in strategies], body) + "\n"


def selection_markdown(rows, tol=TIE_TOLERANCE, *, digits=3):
    """How good the picks are, per ratio: flex's choices against a test-set oracle.

    Every flex run records the test accuracy of all its candidates (each unit
    and ft-all). The *oracle* is the best of them, i.e. what a selection that
    could see the test set would return. A fast or faster run is compared
    with the flex run of the same net, shift, ratio and repeat (same subset
    and seed, so its tuned unit is the same model as flex's candidate). The
    regret of a method is the oracle's test accuracy minus the method's.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    tol : float, default=TIE_TOLERANCE
        Means within ``tol`` of the best are tied with it.
    digits : int, default=3
        Decimals shown.

    Returns
    -------
    str
        A markdown table, one row per ratio.

    Examples
    --------
    >>> from flexsk.bench import read_results, selection_markdown
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(selection_markdown(rows))  # doctest: +SKIP
    """
    rows = [parse_row(r) for r in rows]
    flex = {run_key(r)[:5]: r for r in rows if r["strategy"] == "flex"}
    methods = [s for s in FLEX_VARIANTS if any(r["strategy"] == s for r in rows)]
    stats = defaultdict(lambda: defaultdict(list))
    for row in rows:
        ref = flex.get(run_key(row)[:5])
        if row["strategy"] not in methods or ref is None:
            continue
        oracle = max(ref["candidate_test_scores"].values())
        for group in (row["ratio"], "all ratios"):
            stats[group][row["strategy"]].append(oracle - row["test_accuracy"])
            if row["strategy"] == "flex":
                stats[group]["oracle"].append(oracle)
                stats[group]["returns all"].append(row["selected_unit"] == "all")
    body = []
    for group in sorted(g for g in stats if g != "all ratios") + ["all ratios"]:
        if group not in stats:
            continue
        d = stats[group]
        hit = np.mean(np.array(d["flex"]) <= tol) if d["flex"] else np.nan
        body.append(
            [f"{group} per class" if group != "all ratios" else group, str(len(d["flex"])),
             f"{np.mean(d['returns all']):.0%}" if d["returns all"] else "",
             f"{hit:.0%}", f"{np.mean(d['oracle']):.{digits}f}" if d["oracle"] else ""]
            + [f"{np.mean(d[m]):.{digits}f}" if d[m] else "" for m in methods])
    return _format_table(
        ["ratio", "flex runs", "flex returns ft-all", "flex picks a test-best candidate",
         "oracle test acc."] + [f"regret of {_label(m)}" for m in methods], body) + "\n"


def retrieval_markdown(rows, *, digits=3):
    """Table 4 style: mAP@10 of the tuned nets' embeddings against the source gallery.

    One table per net; rows are (ratio, shift); columns the pretrained net
    (no tuning) and the strategies of :data:`RETRIEVAL_STRATEGIES`, means
    over repeats. The best tuned value of each row is bold. A last table
    gives the mean over all scenarios.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    digits : int, default=3
        Decimals shown.

    Returns
    -------
    str
        Markdown.

    Examples
    --------
    >>> from flexsk.bench import read_results, retrieval_markdown
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(retrieval_markdown(rows))  # doctest: +SKIP
    """
    rows = [parse_row(r) for r in rows]
    means = mean_accuracies(rows, "map_at_10")
    source = mean_accuracies(rows, "source_map_at_10")
    strategies = [s for s in RETRIEVAL_STRATEGIES if any(s in m for m in means.values())]
    parts, totals = [], defaultdict(list)
    for net in dict.fromkeys(k[0] for k in means):
        body = []
        for key, scenario in means.items():
            if key[0] != net:
                continue
            src = np.mean(list(source.get(key, {}).values())) if source.get(key) else None
            best = max(scenario.values())
            cells = _cells(scenario, strategies,
                           {s for s, m in scenario.items() if m >= best - 1e-12}, digits)
            for s in strategies:
                if s in scenario:
                    totals[s].append(scenario[s])
            if src is not None:
                totals["pretrained"].append(src)
            shift = key[2] if key[1] == 1 else f"{key[2]} (3ch)"
            body.append([str(key[3]), shift, "" if src is None else f"{src:.{digits}f}"]
                        + cells)
        parts.append(f"**{net}**\n\n" + _format_table(
            ["ratio", "target", "pretrained"] + [_label(s) for s in strategies], body))
    n, wins = win_counts(rows, field="map_at_10")
    mean_row = ([f"mean over {n} scenarios", f"{np.mean(totals['pretrained']):.{digits}f}"
                 if totals["pretrained"] else ""]
                + [f"{np.mean(totals[s]):.{digits}f}" for s in strategies])
    win_row = [f"best or tied-best (of {n})", ""] + [str(wins.get(s, 0)) for s in strategies]
    parts.append(_format_table(["", "pretrained"] + [_label(s) for s in strategies],
                               [mean_row, win_row]))
    return "\n\n".join(parts) + "\n"


# ----------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------

def write_reports(output, *, log=print):
    """Write the tables (markdown) and figures (PNG) of the results in ``output``.

    Files: ``table3.md`` (Table 3 style tables, the win-count summary and the
    mean accuracy per strategy), ``retrieval.md`` (Table 4 style),
    ``fig1_<net>.png`` (per-unit validation and test accuracy, Figure 1
    style) and ``fig2_<net>.png`` (selection heat map, Figure 2 style).
    Figures need matplotlib (drawn with the non-interactive ``"Agg"``
    backend, which this function selects); without it the tables are still
    written and the install command is printed.

    Parameters
    ----------
    output : str or path-like
        The directory of ``results.csv`` (and ``config.json``); the reports
        are written next to it.
    log : callable or None, default=print
        Called with the summary lines; None is silent.

    Returns
    -------
    list of pathlib.Path
        The files written.

    Raises
    ------
    BenchError
        If ``output`` holds no finished runs.

    Examples
    --------
    The reports of the committed results, regenerated without training (as
    ``flexsk bench --report-only --output docs/_static/bench`` does):

    >>> from flexsk.bench import write_reports
    >>> paths = write_reports("docs/_static/bench", log=None)  # doctest: +SKIP
    """
    log = log or (lambda *a, **k: None)
    output = Path(output)
    csv_path = output / RESULTS_CSV
    if not csv_path.exists():
        raise BenchError(f"no results in {output}: {csv_path} does not exist. Run "
                         f"flexsk bench --output {output} first.")
    rows = read_results(csv_path)
    if not rows:
        raise BenchError(f"{csv_path} holds no finished runs yet.")
    config_path = output / CONFIG_JSON
    header = ""
    if config_path.exists():
        header = f"Grid: {describe_config(json.loads(config_path.read_text()))}\n\n"
    written = []

    table3 = (f"# Mean test accuracy (Table 3 style)\n\n{header}"
              "Mean test accuracy over repeats; in parentheses the source net's accuracy "
              "on the target test set before tuning. Bold: a flex variant strictly above "
              "every baseline (ft-fc (1), ft-fc (2), ft-ss, ft-all) in that row.\n\n"
              + table3_markdown(rows) + "\n" + summary_line(rows) + "\n\n"
              + mean_accuracy_markdown(rows) + "\n## Flex variants against the best "
              f"baseline\n\nPer scenario, the best of {', '.join(_label(b) for b in BASELINES)}"
              f"; tied means within {TIE_TOLERANCE}.\n\n" + versus_baselines_markdown(rows)
              + "\n## Win counts per ratio\n\n"
              + win_counts_markdown(rows) + "\n## Selection against a test-set oracle\n\n"
              "The oracle returns, in each flex run, the candidate (one unit, or ft-all) "
              "with the best *test* accuracy; the regret of a method is the oracle's test "
              "accuracy minus its own (fast and faster are compared with the flex run of "
              "the same subset and seed).\n\n" + selection_markdown(rows)
              + "\n## Units flex returns\n\n" + picks_markdown(rows))
    written.append(_write_text(output / "table3.md", table3))
    retrieval = (f"# Retrieval mAP@10 (Table 4 style)\n\n{header}"
                 "mAP@10 of the tuned net's penultimate features of the target test images, "
                 "queried against the source test images embedded by the pretrained net "
                 "(euclidean). 'pretrained': the target images embedded by the pretrained "
                 "net too. Bold: best tuned value of the row.\n\n" + retrieval_markdown(rows))
    written.append(_write_text(output / "retrieval.md", retrieval))
    log(summary_line(rows))
    log(mean_accuracy_markdown(rows))

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log(f"Figures skipped: they need matplotlib ({MATPLOTLIB_HINT}).")
        return written
    from . import plot

    for net in dict.fromkeys(r["net"] for r in rows):
        if any(r["net"] == net and r["strategy"] == "flex" for r in rows):
            fig = plot.unit_scores_figure(rows, net=net)
            written.append(_save(fig, output / f"fig1_{net}.png"))
            plt.close(fig)
        n_scenarios = len({_scenario(r) for r in rows if r["net"] == net})
        fig, ax = plt.subplots(figsize=(7, 1.2 + 0.28 * n_scenarios), layout="constrained")
        plot.plot_selection_heatmap(rows, net=net, ax=ax)
        written.append(_save(fig, output / f"fig2_{net}.png"))
        plt.close(fig)
    log("Wrote " + ", ".join(str(p) for p in written))
    return written


def _write_text(path, text):
    path.write_text(text)
    return path


def _save(fig, path):
    fig.savefig(path, dpi=110)
    return path


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------

def _words(values):
    """``--shifts blur,noise rotation`` -> ["blur", "noise", "rotation"]."""
    if values is None:
        return None
    return [w for v in values for w in v.split(",") if w]


def _parse_repeats(text):
    """``"5"`` -> 5; ``"2:5,10:3"`` -> {2: 5, 10: 3}."""
    if text is None:
        return None
    try:
        if ":" not in text:
            return int(text)
        pairs = [item.split(":") for item in text.split(",") if item]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError
        return {int(r): int(n) for r, n in pairs}
    except ValueError:
        raise BenchError(f"--repeats takes N or RATIO:N,RATIO:N,... (e.g. 5 or 2:5,10:2), "
                         f"got {text!r}.") from None


def configure_parser(parser):
    """Add the ``flexsk bench`` options to an argparse parser."""
    from .cli import int_at_least
    from .datasets import SHIFTS
    from .zoo import ARCHS

    parser.description = (
        "Run the grid of source nets x shifts x ratios x strategies x repeats, appending "
        "one CSV row per run (resumable), then write Table 3 / Table 4 style markdown "
        "tables and Figure 1 / Figure 2 style PNGs into the output directory.")
    parser.add_argument("--output", metavar="DIR", default=None,
                        help=f"results directory (default: {DEFAULT_OUTPUT}/, with --quick "
                        f"{QUICK_OUTPUT}/)")
    parser.add_argument("--nets", nargs="+", metavar="NET", default=None,
                        help=f"zoo nets, from {', '.join(ARCHS)} (default: both)")
    parser.add_argument("--shifts", nargs="+", metavar="SHIFT", default=None,
                        help=f"shifts, from {', '.join(SHIFTS)} (default: all)")
    parser.add_argument("--ratios", nargs="+", type=int, metavar="N", default=None,
                        help="training images per class (default: 2 10 40)")
    parser.add_argument("--repeats", default=None, metavar="N|R:N,...",
                        help="repeats of the scarcest ratio (default: 5), or per ratio, "
                        "e.g. 2:5,10:2")
    parser.add_argument("--other-repeats", type=int, default=None, metavar="N",
                        help="repeats of the other ratios (default: 1)")
    parser.add_argument("--strategies", nargs="+", metavar="S", default=None,
                        help=f"strategies, from {', '.join(STRATEGIES)} (default: all)")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help=f"default: {DEFAULTS['max_epochs']}")
    parser.add_argument("--patience", type=int, default=None,
                        help=f"default: {DEFAULTS['patience']}")
    parser.add_argument("--image-size", type=int, default=None,
                        help=f"image side, a multiple of 8 (default: {DEFAULTS['image_size']})")
    parser.add_argument("--threads", type=int_at_least(1), default=1,
                        help="torch intra-op threads (default: 1, the fastest on a shared "
                        "machine)")
    parser.add_argument("--quick", action="store_true",
                        help="a small grid (conv4; blur, rotation, mnistm; ratios 2 and 10; "
                        "2 repeats at ratio 2): about a minute on 2 cores")
    parser.add_argument("--report-only", action="store_true",
                        help="only regenerate the tables and figures from the CSV")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(args):
    """``flexsk bench``: run (or resume) the grid, then write the reports."""
    output = Path(args.output or (QUICK_OUTPUT if args.quick else DEFAULT_OUTPUT))
    try:
        if not args.report_only:
            try:
                config = make_config(
                    nets=_words(args.nets), shifts=_words(args.shifts), ratios=args.ratios,
                    repeats=_parse_repeats(args.repeats), other_repeats=args.other_repeats,
                    strategies=_words(args.strategies), max_epochs=args.max_epochs,
                    patience=args.patience, image_size=args.image_size, quick=args.quick)
            except ValueError as exc:
                raise BenchError(str(exc)) from exc
            started = time.perf_counter()
            try:
                run_bench(config, output, threads=args.threads, progress=not args.quiet)
            except KeyboardInterrupt:
                print(f"\nInterrupted: every finished run is saved in {output / RESULTS_CSV}; "
                      f"rerun the same command to resume.", file=sys.stderr)
                return 130
            print(f"Wall time of this session: {time.perf_counter() - started:.0f} s.")
        write_reports(output)
    except BenchError as exc:
        print(f"flexsk bench: error: {exc}", file=sys.stderr)
        return 2
    return 0
