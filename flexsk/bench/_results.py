"""The results directory: its files, the CSV's columns, and the CSV's reader and writer.

``results.csv`` holds one row per finished run, one row per line (JSON cells
hold no newline). A row counts only when it is complete: a UTF-8 line, every
column present and parseable with its type (see :data:`COLUMNS`), none that
the reports read left empty, and a newline after it.
"""

import contextlib
import csv
import io
import json
import os
import warnings
from pathlib import Path

from sklearn.utils._param_validation import validate_params

from .._files import atomic_write
from .._ranking import ranked
from .._text import key_name
from ._config import RETRIEVAL_STRATEGIES, BenchConfigError, BenchError

__all__ = ["RESULTS_CSV", "CONFIG_JSON", "TIMING_JSON", "LOCK_FILE", "COLUMNS", "KEY_COLUMNS",
           "best_key", "parse_row", "run_key", "describe_run", "format_row", "read_results",
           "clean_results", "appending"]

#: The results CSV, in the results directory: one row per run (:data:`COLUMNS`).
RESULTS_CSV = "results.csv"
CONFIG_JSON = "config.json"
TIMING_JSON = "timing.json"
#: Held (``flock``) by the one ``flexsk bench`` that writes the directory.
LOCK_FILE = ".flexsk-bench.lock"


def _setting(text):
    """An estimator setting as written: an int, else the word (e.g. ``"auto"``)."""
    try:
        return int(text)
    except ValueError:
        return text


#: Column -> (type, may be empty): str, int, float, json or _setting. New
#: columns go at the end, here and in the runner's row; readers take old
#: files' own headers.
_COLUMN_TYPES = {
    # the run: its key
    "net": (str, False),
    "n_channels": (int, False),
    "shift": (str, False),
    "ratio": (int, False),
    "repeat": (int, False),
    "strategy": (str, False),
    # its settings
    "n_train": (int, False),
    "image_size": (int, False),
    "max_epochs": (_setting, False),  # FlexTuner's, when the config leaves its default
    "patience": (_setting, True),  # None: no early stopping
    "lr": (float, False),
    "batch_size": (int, False),
    # its outcome
    "test_accuracy": (float, False),
    "source_accuracy": (float, False),
    "selected_unit": (str, False),
    "units": (json, False),
    "proxy_scores": (json, False),
    "validation_scores": (json, False),
    "candidate_test_scores": (json, False),
    "n_epochs": (json, False),
    "fit_seconds": (float, False),
    "map_at_10": (float, True),  # only RETRIEVAL_STRATEGIES
    "source_map_at_10": (float, True),
    # added with refit (bench version 2); test_accuracy is the selection run's pick
    "refit_test_accuracy": (float, False),  # the returned model: the pick refitted
    "validation_losses": (json, False),
    "proxy_losses": (json, False),
    "best_epochs": (json, False),
    "refit_epochs": (int, True),
    "refit_seconds": (float, False),
    # the config's scoring (None without one): the selection run's pick's test score
    "test_score": (float, True),
}
#: What Table 3 and the selection reports read: a row with one of them empty is
#: incomplete wherever it is read (the runner requires every column that may not be
#: empty). A file whose header lacks one (``refit_test_accuracy``: results made before
#: the refit) is read without it.
_METRICS = ("test_accuracy", "source_accuracy", "selected_unit", "validation_scores",
            "candidate_test_scores", "refit_test_accuracy")
#: What the retrieval table reads: empty in the rows of other strategies, but a row
#: of :data:`RETRIEVAL_STRATEGIES` with one of them empty is incomplete.
_MAPS = ("map_at_10", "source_map_at_10")
#: Columns of the results CSV, one row per (net, n_channels, shift, ratio, repeat, strategy).
COLUMNS = list(_COLUMN_TYPES)
KEY_COLUMNS = ("net", "n_channels", "shift", "ratio", "repeat", "strategy")


def best_key(scores, losses=None):
    """The best key under flexsk's ranking rule: highest score, then lowest loss, then
    the earliest key.

    Parameters
    ----------
    scores : dict
        Key (e.g. a unit) -> validation accuracy, in order (e.g. forward order).
    losses : dict or None, default=None
        Key -> validation loss, the tie-break; None breaks ties by order alone.

    Returns
    -------
    key or None
        None when ``scores`` is empty.

    Examples
    --------
    >>> from flexsk.bench import best_key
    >>> best_key({"conv1": 0.5, "conv2": 0.8, "fc1": 0.8})
    'conv2'
    >>> best_key({"conv1": 0.5, "conv2": 0.8, "fc1": 0.8}, {"conv1": 1, "conv2": 0.6, "fc1": 0.4})
    'fc1'
    """
    return ranked(scores, losses)[0] if scores else None


def _parse_value(column, value):
    kind = _COLUMN_TYPES.get(column, (str, True))[0]
    if not isinstance(value, str) or kind is str:
        return value
    if value == "":
        return None
    return json.loads(value) if kind is json else kind(value)


def parse_row(row):
    """A results row with typed values (ints, floats, decoded JSON); idempotent.

    Parameters
    ----------
    row : dict
        One row of ``results.csv`` as :class:`csv.DictReader` gives it (strings),
        or a row already parsed.

    Returns
    -------
    dict
        The same keys; numbers as ``int`` or ``float``, the JSON columns
        (``units``, ``validation_scores``, ...) decoded, empty cells as None.

    Examples
    --------
    >>> from flexsk.bench import parse_row
    >>> parse_row({"net": "conv4", "ratio": "2", "units": '["conv1", "fc2"]'})
    {'net': 'conv4', 'ratio': 2, 'units': ['conv1', 'fc2']}
    """
    return {k: _parse_value(k, v) for k, v in row.items()}


def run_key(row):
    """The identity of a run: its key columns, typed."""
    return (str(row["net"]), int(row["n_channels"]), str(row["shift"]), int(row["ratio"]),
            int(row["repeat"]), str(row["strategy"]))


def describe_run(key):
    """``conv4 (1ch) noise, ratio 2, repeat 0, flex`` for a :func:`run_key`."""
    net, n_channels, shift, ratio, repeat, strategy = key
    return f"{net} ({n_channels}ch) {shift}, ratio {ratio}, repeat {repeat}, {strategy}"


def format_row(row):
    """A row of Python values as the CSV's cells: None empty, JSON columns encoded."""
    cells = {}
    for column in COLUMNS:
        value = row[column]
        if value is None:
            value = ""
        elif _COLUMN_TYPES[column][0] is json:
            if isinstance(value, dict):
                value = {key_name(k): v for k, v in value.items()}
            value = json.dumps(value)
        cells[column] = value
    return cells


class _Damaged(ValueError):
    """A line of the CSV that is not a complete row."""


def _lines(text):
    """Physical lines of a str or bytes, each with its newline (the last one may lack it)."""
    newline = b"\n" if isinstance(text, bytes) else "\n"
    lines = text.split(newline)
    last = lines.pop()
    return [line + newline for line in lines] + ([last] if last else [])


def _not_utf8(line):
    """Why the bytes ``line`` are not text (where its first bad byte is); None if they are."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (byte {exc.start + 1} of the line)"
    return None


def _decoded(line):
    """A line of bytes as text; the bytes themselves when they are not UTF-8."""
    return line if _not_utf8(line) else line.decode("utf-8")


def _empty(column, row, *, strict):
    """Why ``column``, empty in ``row``, makes it incomplete; None if it may be empty."""
    if column in _MAPS:
        strategy = row.get("strategy")
        if strategy in RETRIEVAL_STRATEGIES:
            return f"{column} is empty, and every {strategy} run has one"
        return None
    nullable = _COLUMN_TYPES.get(column, (str, True))[1]
    if column in KEY_COLUMNS or column in _METRICS or (strict and not nullable):
        return f"{column} is empty"
    return None


def _row(line, header, *, strict):
    """The typed row of one line; raises :class:`_Damaged` saying why it is not one."""
    if isinstance(line, bytes):
        raise _Damaged(_not_utf8(line))
    if not line.endswith("\n"):
        raise _Damaged("cut short: no newline at its end")
    try:
        values = next(csv.reader([line]), [])
    except csv.Error as exc:
        raise _Damaged(f"not CSV: {exc}") from None
    if not values:
        raise _Damaged("an empty line")
    if values == header:
        raise _Damaged("a repeated header line")
    if len(values) != len(header):
        raise _Damaged(f"{len(values)} of the {len(header)} columns")
    row = dict(zip(header, values))
    for column, value in row.items():
        kind = _COLUMN_TYPES.get(column, (str, True))[0]
        if value == "":
            reason = _empty(column, row, strict=strict)
            if reason:
                raise _Damaged(reason)
            continue
        try:
            _parse_value(column, value)
        except ValueError:
            what = {json: "JSON", int: "an int", float: "a float"}[kind]
            raise _Damaged(f"{column} {value[:40]!r} is not {what}") from None
    return parse_row(row)


def _name(line, header):
    """The run a damaged line was, if its key columns survived (as UTF-8, if bytes)."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    try:
        values = dict(zip(header, next(csv.reader([line]), [])))
        run = describe_run(run_key(values))
    except (KeyError, ValueError, csv.Error):
        return None
    return None if "\ufffd" in run else run


def _read_lines(path):
    """The file's lines (see :func:`_lines`), each decoded from UTF-8 on its own.

    A line that is not UTF-8 stays bytes: a damaged line like any other. A
    header line that is not is refused with a BenchError (one line): the file
    is no results file.
    """
    with open(path, "rb") as f:
        lines = [_decoded(line) for line in _lines(f.read())]
    if lines and isinstance(lines[0], bytes):
        raise BenchError(f"{path}, line 1 (the header) is {_not_utf8(lines[0])}: it is not a "
                         f"flexsk bench results file, or it is damaged. Pass --output NEWDIR "
                         f"to start a new one.")
    return lines


def _unique(rows_and_lines, path):
    """Drop the rows of a run already seen (a duplicated line), with a warning each."""
    seen, kept = set(), []
    for number, row, line in rows_and_lines:
        key = run_key(row)
        if key in seen:
            warnings.warn(f"{path}, line {number} ({describe_run(key)}) repeats a run of an "
                          f"earlier line; skipped.", RuntimeWarning, stacklevel=4)
            continue
        seen.add(key)
        kept.append((number, row, line))
    return kept


def _header(path, lines):
    header = next(csv.reader(lines[:1]), [])
    if not header:
        raise BenchError(f"{path} is empty: it has no header line.")
    missing = [c for c in KEY_COLUMNS if c not in header]
    if missing:
        raise BenchError(f"{path} is not a flexsk bench results file: it has no "
                         f"{', '.join(missing)} column.")
    return header


@validate_params({"path": [str, os.PathLike]}, prefer_skip_nested_validation=True)
def read_results(path):
    """Read a results CSV written by :func:`run_bench`.

    Lines that are not complete rows (a run killed mid-write, a damaged line,
    one that is not UTF-8, an empty cell that a report reads) are skipped
    with a warning.

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

    Warns
    -----
    RuntimeWarning
        For each line skipped, naming its number, its run (if its key columns
        survived) and what is wrong with it.

    Raises
    ------
    BenchError
        If the file has no header line, or one that is not UTF-8 or lacks a
        key column: it is no results file.

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
    lines = _read_lines(path)
    header = _header(path, lines)
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            rows.append((number, _row(line, header, strict=False), line))
        except _Damaged as exc:
            run = _name(line, header)
            warnings.warn(f"{path}, line {number}{f' ({run})' if run else ''} is not a "
                          f"complete row ({exc}); skipped.", RuntimeWarning, stacklevel=3)
    return [row for _, row, _ in _unique(rows, path)]


def clean_results(path):
    """Check the runner's CSV and drop the lines that are not complete rows.

    A complete row is a UTF-8 line with every column of :data:`COLUMNS`,
    each parseable with its type and empty only where the column allows it
    (the mAP columns only outside :data:`RETRIEVAL_STRATEGIES`). The other
    lines are dropped by rewriting the file all at once; the rows kept are
    kept byte for byte.

    Returns
    -------
    finished : set
        The :func:`run_key` of every complete row.
    dropped : list of (int, str or None, str)
        Each dropped line: its number, the run it was (if its key columns
        survived) and what was wrong with it.

    Raises
    ------
    BenchConfigError
        If the header is not :data:`COLUMNS`.
    BenchError
        If the header is not UTF-8.
    """
    lines = _read_lines(path)
    header = next(csv.reader(lines[:1]), None)
    if header != COLUMNS:
        raise BenchConfigError(
            f"{path} has columns {header}, not those of this version of flexsk bench. Pass "
            f"--output NEWDIR to start a new results file.")
    complete, dropped = [], []
    for number, line in enumerate(lines[1:], start=2):
        try:
            complete.append((number, _row(line, COLUMNS, strict=True), line))
        except _Damaged as exc:
            dropped.append((number, _name(line, COLUMNS), str(exc)))
    kept = _unique(complete, path)
    finished = {run_key(row) for _, row, _ in kept}
    head = lines[0] if lines[0].endswith("\n") else lines[0] + "\r\n"
    if dropped or len(kept) < len(complete) or head != lines[0]:
        with atomic_write(path, text=True) as f:
            f.write(head + "".join(line for _, _, line in kept))
    return finished, dropped


@contextlib.contextmanager
def appending(path):
    """Append rows to the CSV (created with its header if new or empty), each on disk at once.

    Yields
    ------
    write : callable
        ``write(row)``: a dict of Python values, one per column of
        :data:`COLUMNS` (None for an empty cell).
    """
    new_file = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as f:
        if new_file:
            csv.DictWriter(f, COLUMNS).writeheader()
            f.flush()

        def write(row):
            cells = format_row(row)
            line = io.StringIO()
            csv.DictWriter(line, COLUMNS).writerow(cells)
            try:  # a row the next run would not count must never be written
                _row(line.getvalue(), COLUMNS, strict=True)
            except _Damaged as exc:
                raise ValueError(f"flexsk bench made a row it cannot read back ({exc}): "
                                 f"{describe_run(run_key(row))}.") from None
            f.write(line.getvalue())
            f.flush()
            os.fsync(f.fileno())

        yield write
