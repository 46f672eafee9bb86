"""What the measuring scripts of ``benchmarks/`` share: a CSV of results they resume."""

import contextlib
import csv
import io
import os
from pathlib import Path

from .._files import try_lock
from ._config import BenchError

__all__ = ["resumable_csv"]

_EXTRA = object()  # the key of the cells a line has beyond the columns


@contextlib.contextmanager
def resumable_csv(path, columns, key):
    """Append rows to a script's CSV of results, and know which are done already.

    The file is created with ``columns`` as its header. A row counts as done
    when its line is UTF-8 and has one cell per column (an empty cell is a
    value, as None is written); a line that is not (cut short by a killed
    process, or damaged) does not count, so its run is made again. A last
    line with no newline is cut off before anything is appended. One
    process at a time writes the file: a second is refused.

    Parameters
    ----------
    path : str or path-like
        The CSV file.
    columns : sequence of str
        Its columns, in order; a file with another header is refused (a
        script whose columns changed writes a new file).
    key : sequence of str
        The columns that name a run.

    Yields
    ------
    done : set of tuple of str
        The ``key`` cells of every finished row, as text.
    write : callable
        ``write(row)`` appends the dict ``row`` (a missing column is an empty
        cell) and puts it on disk at once.

    Raises
    ------
    flexsk.bench.BenchError
        If the file's header is not ``columns``, or another process writes it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from flexsk.bench import resumable_csv
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "runs.csv"
    >>> with resumable_csv(path, ["seed", "score"], key=["seed"]) as (done, write):
    ...     for seed in range(3):
    ...         if (str(seed),) not in done:
    ...             write({"seed": seed, "score": seed / 10})
    >>> with resumable_csv(path, ["seed", "score"], key=["seed"]) as (done, write):
    ...     sorted(done)
    [('0',), ('1',), ('2',)]
    """
    path, columns, key = Path(path), list(columns), list(key)
    with open(path, "a+b") as f:
        if not try_lock(f.fileno()):
            raise BenchError(f"another process is writing {path}; wait for it to finish.")
        f.seek(0)
        data = f.read()
        done = set()
        if data:
            lines = data.decode("utf-8", errors="replace").splitlines()
            if next(csv.reader(lines[:1]), []) != columns:
                raise BenchError(
                    f"{path} has the columns {next(csv.reader(lines[:1]), [])}, not "
                    f"{columns}: it was written by another version of the script. Move it "
                    f"aside, or write to another file.")
            if not data.endswith(b"\n"):  # a row cut short: its run is made again
                f.truncate(data.rfind(b"\n") + 1)
                lines = lines[:-1]
            for row in csv.DictReader(lines[1:], fieldnames=columns, restkey=_EXTRA):
                if _EXTRA not in row and None not in row.values() \
                        and "\ufffd" not in "".join(row.values()):
                    done.add(tuple(row[k] for k in key))
        else:
            f.write(_line(columns, dict(zip(columns, columns))))
        f.flush()

        def write(row):
            unknown = set(row) - set(columns)
            if unknown:
                raise ValueError(f"unknown columns {sorted(unknown)}; the file has {columns}.")
            f.write(_line(columns, row))
            f.flush()
            os.fsync(f.fileno())

        yield done, write


def _line(columns, row):
    text = io.StringIO()
    csv.DictWriter(text, columns).writerow({c: "" if row.get(c) is None else row[c]
                                           for c in columns})
    return text.getvalue().encode("utf-8")
