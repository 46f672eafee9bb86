"""Atomic file writes, shared by the zoo's weights cache and the bench's results."""

import contextlib
import os
import secrets
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
    import msvcrt

__all__ = ["atomic_write", "try_lock"]


@contextlib.contextmanager
def atomic_write(path, *, text=False):
    """Write ``path`` all at once: a temporary file, then :func:`os.replace`.

    Readers see the old file or the new one, never a part. The temporary file
    sits next to ``path`` with a unique name (process id and a random token),
    so concurrent writers never share it, and it is opened exclusively with
    the usual permissions (``0o666`` less the umask; :func:`tempfile.mkstemp`
    would make it private). On an error it is removed and ``path`` is left
    as it was.

    Parameters
    ----------
    path : str or path-like
        The file to write; its directory must exist.
    text : bool, default=False
        Yield a text file (UTF-8, newlines written as given) instead of a
        binary one.

    Yields
    ------
    file
        The temporary file, open for writing.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    try:
        kwargs = dict(encoding="utf-8", newline="") if text else {}
        with open(tmp, "x" if text else "xb", **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def try_lock(fd):
    """Lock the open file ``fd`` exclusively, without waiting; False if another holds it.

    The lock is the system's (``flock``; ``msvcrt.locking`` on Windows), tied
    to the open file: it goes when the file is closed or the process ends.
    """
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except (BlockingIOError, PermissionError):
        return False
    return True
