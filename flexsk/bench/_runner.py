"""The resumable runner: one locked writer per results directory, one CSV row per run."""

import contextlib
import copy
import json
import os
import sys
import time
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, validate_params
from tqdm.auto import tqdm

from .. import FlexTuner
from .._files import atomic_write, try_lock
from .._network import net_like
from .._text import key_name
from ..datasets import load_digits_source, make_digits_shift, train_val_test_split
from ..metrics import make_retrieval_scorer, map_at_k
from ..zoo import load_source_net
from ._config import (REFERENCES, RETRIEVAL_SCORING, RETRIEVAL_STRATEGIES,
                      SHIFT_RANDOM_STATE, STRATEGIES, BenchConfigError, BenchError,
                      describe_config, estimator_settings, plan_runs, read_config,
                      write_config)
from ._results import (CONFIG_JSON, LOCK_FILE, RESULTS_CSV, TIMING_JSON, appending,
                       clean_results, run_key)

__all__ = ["run_bench"]


@contextlib.contextmanager
def _exclusive(output):
    """Hold the directory's lock file for the duration, or refuse with a BenchError.

    The lock is tied to the open file, so the system releases it whatever
    way the process ends; the file stays, since unlinking it would race with
    a process that has just opened it.
    """
    fd = os.open(output / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if not try_lock(fd):
            try:
                holder = os.read(fd, 32).decode(errors="replace").strip()
            except OSError:  # pragma: no cover - Windows: the holder's byte is locked
                holder = ""
            raise BenchError(
                f"another flexsk bench{f' (process {holder})' if holder else ''} is running "
                f"in {output}; wait for it to finish, or pass --output NEWDIR.")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _check_config(output, config):
    """Write config.json, or check that the one there matches ``config``."""
    csv_path, config_path = output / RESULTS_CSV, output / CONFIG_JSON
    if config_path.exists():
        stored = read_config(config_path)
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
    write_config(config_path, config)


def _read_timing(path):
    """The sessions logged in timing.json; a damaged log is refused before any run."""
    if not path.exists():
        return []
    try:
        sessions = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        sessions = exc
    if not isinstance(sessions, list):
        what = sessions if isinstance(sessions, Exception) else type(sessions).__name__
        raise BenchError(f"{path} is damaged (not a JSON list of sessions: {what}); it only "
                         f"logs wall times, so delete it (or fix it) and rerun.")
    return sessions


def _record_timing(path, sessions, started, n_done, threads, complete):
    sessions = sessions + [dict(finished=time.strftime("%Y-%m-%d %H:%M:%S"),
                                wall_seconds=round(time.perf_counter() - started, 1),
                                runs=n_done, threads=threads, completed_grid=complete)]
    try:
        with atomic_write(path, text=True) as f:
            f.write(json.dumps(sessions, indent=2) + "\n")
    except OSError as exc:  # never hide the runs, or the error that ended them
        warnings.warn(f"could not log this session's wall time in {path}: {exc}",
                      RuntimeWarning, stacklevel=3)


class _Scenario:
    """Data and source net of one (net, n_channels, shift), loaded once."""

    def __init__(self, net_name, n_channels, shift, image_size, nets):
        key = (net_name, n_channels)
        if key not in nets:
            nets[key] = load_source_net(net_name, n_channels=n_channels,
                                        image_size=image_size)
        self.net = nets[key]
        self.target = make_digits_shift(shift, image_size=image_size, n_channels=n_channels,
                                        random_state=SHIFT_RANDOM_STATE)
        self.X_source, self.y_source = load_digits_source(
            split="test", image_size=image_size, n_channels=n_channels, return_X_y=True)
        self.source_accuracy = None

    def split(self, ratio, repeat):
        """The run's training set (nested across ratios for one repeat), validation and test."""
        X_train, y_train, X_val, y_val, X_test, y_test = train_val_test_split(
            self.target, ratio, random_state=repeat)
        if self.source_accuracy is None:
            self.source_accuracy = float(np.mean(self.net.predict(X_test) == y_test))
        return X_train, y_train, X_val, y_val, X_test, y_test


def _run_one(run, scenario, config):
    """Fit one strategy on one training subset; the CSV row."""
    X_train, y_train, X_val, y_val, X_test, y_test = scenario.split(run["ratio"],
                                                                    run["repeat"])
    net = scenario.net
    if run["strategy"] in REFERENCES:
        net = _reinitialized(net, run["repeat"])
    scoring = _scoring(config, scenario)
    tuner = FlexTuner(net, keep_candidates=True, random_state=run["repeat"], scoring=scoring,
                      **estimator_settings(config), **STRATEGIES[run["strategy"]])
    tuner.fit(X_train, y_train, X_val=X_val, y_val=y_val)
    candidate_test_scores = tuner.score_candidates(X_test, y_test)
    test_score = None if scoring is None else tuner.score_candidates(
        X_test, y_test, scoring=scoring)[tuner.selected_unit_]
    row = dict(run, n_train=len(y_train), image_size=config["image_size"],
               max_epochs=tuner.max_epochs, patience=tuner.patience, lr=net.lr,
               batch_size=net.batch_size,
               # the selection run's pick, as in the paper's protocol (Table 3)
               test_accuracy=candidate_test_scores[tuner.selected_unit_],
               source_accuracy=scenario.source_accuracy,
               selected_unit=key_name(tuner.selected_unit_),
               units=tuner.units_,
               proxy_scores=tuner.proxy_scores_,
               validation_scores=tuner.validation_scores_,
               candidate_test_scores=candidate_test_scores,
               n_epochs=tuner.n_epochs_,
               fit_seconds=round(tuner.fit_time_, 4), map_at_10=None, source_map_at_10=None,
               refit_test_accuracy=float(tuner.score(X_test, y_test)),
               validation_losses=tuner.validation_losses_,
               proxy_losses=tuner.proxy_losses_,
               best_epochs=tuner.best_epochs_,
               refit_epochs=tuner.refit_epochs_,
               refit_seconds=round(tuner.refit_time_, 4), test_score=test_score)
    if run["strategy"] in RETRIEVAL_STRATEGIES:
        gallery = tuner.pretrained_transform(scenario.X_source)
        row["map_at_10"] = map_at_k(tuner.transform(X_test), y_test, gallery,
                                    scenario.y_source, k=config["map_k"])
        row["source_map_at_10"] = map_at_k(tuner.pretrained_transform(X_test), y_test,
                                           gallery, scenario.y_source, k=config["map_k"])
    return row


def _scoring(config, scenario):
    """FlexTuner's ``scoring`` for the configuration's ``scoring`` on ``scenario``."""
    scoring = config.get("scoring")
    if scoring == RETRIEVAL_SCORING:
        return make_retrieval_scorer(scenario.X_source, scenario.y_source, k=config["map_k"])
    return scoring


def _reinitialized(net, seed):
    """A net like ``net`` whose weights are drawn anew (each module's reset_parameters)."""
    module = copy.deepcopy(net.module_)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for submodule in module.modules():
            if hasattr(submodule, "reset_parameters"):
                submodule.reset_parameters()
    return net_like(net, module)


def _silent(*args, **kwargs):
    pass


@validate_params(
    {
        "config": [dict],
        "output": [str, os.PathLike],
        "threads": [Interval(Integral, 1, None, closed="left")],
        "progress": ["boolean"],
        "log": [callable, None],
    },
    prefer_skip_nested_validation=False,  # FlexTuner validates its own parameters
)
def run_bench(config, output, *, threads=1, progress=True, log=print):
    """Run every unfinished run of the grid, appending one CSV row per run.

    One process at a time writes a results directory: it holds an exclusive
    lock on it (``.flexsk-bench.lock``), and a second one is refused. Rows
    that are not complete (a run killed mid-write, a damaged line, one that
    is not UTF-8, an empty cell the reports read) do not count as finished:
    they are dropped from the CSV, with a warning, and their runs are done
    again.

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
        If ``output`` holds results made with another configuration, or its
        ``config.json`` is damaged.
    BenchError
        If another process is running the bench in ``output``, its
        ``results.csv`` has a header line that is not UTF-8 (no results
        file), or its ``timing.json`` is damaged (refused before any run: it
        only logs wall times, so deleting it loses no result).

    Warns
    -----
    RuntimeWarning
        For each line of the CSV that is not a complete row, naming its run.

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
    log = log or _silent
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with _exclusive(output):
        _check_config(output, config)
        sessions = _read_timing(output / TIMING_JSON)
        csv_path = output / RESULTS_CSV
        done = set()
        if csv_path.exists() and csv_path.stat().st_size > 0:
            done, dropped = clean_results(csv_path)
            for number, run, reason in dropped:
                warnings.warn(f"{csv_path}, line {number} was not a complete row ({reason}); "
                              f"dropped{f', and its run {run} is done again' if run else ''}.",
                              RuntimeWarning, stacklevel=3)
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
            with appending(csv_path) as write:
                bar = tqdm(pending, desc="flexsk bench", unit="run", disable=not progress,
                           file=sys.stderr, mininterval=1.0, smoothing=0.05)
                for run in bar:
                    key = (run["net"], run["n_channels"], run["shift"])
                    if key != scenario_key:
                        scenario = _Scenario(*key, config["image_size"], nets)
                        scenario_key = key
                    bar.set_postfix_str(f"{run['net']} {run['shift']} r{run['ratio']} "
                                        f"#{run['repeat']} {run['strategy']}", refresh=False)
                    write(_run_one(run, scenario, config))
                    n_done += 1
                bar.close()
        finally:
            torch.set_num_threads(previous_threads)
            _record_timing(output / TIMING_JSON, sessions, started, n_done, threads,
                           complete=n_done == len(pending))
    log(f"{n_done} runs in {time.perf_counter() - started:.0f} s; results in {csv_path}.")
    return n_done
