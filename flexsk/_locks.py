"""What threads of one process must not do at the same time.

:mod:`torch.fx` tracing patches ``nn.Module.__call__`` for the whole process
while it runs, so a forward pass in another thread could be recorded into the
trace, or run through the tracer. Tracing therefore takes the lock
exclusively, and forward passes share it; each holds it only for one trace or
one batch, so a prediction never waits on another estimator's fit, only on a
trace in progress (milliseconds for the networks tested here).

Dropout and other random layers draw from torch's process-wide generator,
which :func:`torch.manual_seed` resets: concurrent fits in threads of one
process (e.g. ``GridSearchCV`` under the threading backend) with such layers
are not reproducible. Fits are reproducible in worker processes (loky, dask).
"""

import contextlib
import threading

__all__ = ["SharedExclusiveLock", "FORWARD_LOCK", "forward_pass", "tracing"]


class SharedExclusiveLock:
    """A readers-writer lock that prefers writers.

    Many threads may hold it shared at once; a thread that wants it exclusive
    waits until they release it, and from then on new shared holders wait
    behind it, so that a stream of forward passes never starves a trace.
    The shared side is reentrant per thread (a forward pass inside a forward
    pass); the exclusive side must not be taken while holding the shared one.
    """

    def __init__(self):
        self._condition = threading.Condition(threading.Lock())
        self._readers = {}  # thread id -> depth
        self._writer = None
        self._writers_waiting = 0

    @contextlib.contextmanager
    def shared(self):
        me = threading.get_ident()
        with self._condition:
            if self._readers.get(me):  # reentrant: already inside a shared section
                self._readers[me] += 1
            else:
                while self._writer is not None or self._writers_waiting:
                    if self._writer == me:
                        break  # a trace runs the module it traces
                    self._condition.wait()
                self._readers[me] = self._readers.get(me, 0) + 1
        try:
            yield
        finally:
            with self._condition:
                self._readers[me] -= 1
                if not self._readers[me]:
                    del self._readers[me]
                    self._condition.notify_all()

    @contextlib.contextmanager
    def exclusive(self):
        me = threading.get_ident()
        with self._condition:
            if self._readers.get(me):
                raise RuntimeError("cannot trace inside a forward pass of the same thread")
            self._writers_waiting += 1
            try:
                while self._writer is not None or self._readers:
                    self._condition.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = me
        try:
            yield
        finally:
            with self._condition:
                self._writer = None
                self._condition.notify_all()


#: Forward passes (shared) against torch.fx tracing (exclusive), process-wide.
FORWARD_LOCK = SharedExclusiveLock()


def forward_pass():
    """Hold around a forward pass (one batch): shared with other forward passes."""
    return FORWARD_LOCK.shared()


def tracing():
    """Hold around a torch.fx trace: no forward pass runs in any other thread."""
    return FORWARD_LOCK.exclusive()
