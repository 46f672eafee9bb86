"""Forward-pass instrumentation: which modules a forward pass runs, and what they take.

Every place in flexsk that watches a forward pass goes through here: the unit
order, the output layer's discovery, the new head's start, the probe of a
network's activations, a unit's inputs (the activation cache) and the
embedding of :meth:`~flexsk.FlexTuner.transform`. Each pass:

* runs without gradients, in eval mode, under the forward-pass lock
  (:func:`flexsk._locks.forward_pass`), and gives the modules back the
  training modes they had;
* watches with hooks that act in the calling thread only and are removed
  when the pass ends, so that a fitted tuner's modules, shared by threads
  that predict at once, never see another thread's hooks at work.

Registering and removing a hook happens while the interpreter lock is held,
and a module's call takes a snapshot of its hooks, so a hook added for one
thread's pass never disturbs a pass running in another thread.
"""

import contextlib
import threading

import torch

from ._locks import forward_pass

__all__ = ["first_output", "run", "calls", "inputs", "outputs"]


def first_output(outputs):
    """A module's output, or the first element of a tuple output (skorch's convention)."""
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


class _Stop(Exception):
    """Ends a forward pass once everything wanted from it is recorded."""


@contextlib.contextmanager
def _eval_mode(module):
    modes = {sub: sub.training for sub in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for sub, mode in modes.items():
            sub.training = mode


@contextlib.contextmanager
def _watching(hooks, pre=True):
    """Register ``{module: hook}`` for the calling thread only; remove them on exit."""
    me = threading.get_ident()

    def mine(hook):
        def call(*args):
            if threading.get_ident() == me:
                return hook(*args)
        return call

    register = "register_forward_pre_hook" if pre else "register_forward_hook"
    handles = [getattr(module, register)(mine(hook)) for module, hook in hooks.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def run(module, X, *, hooks=None, pre=True):
    """``module(X)`` without gradients, in eval mode, under the forward-pass lock, with
    ``hooks`` (``{submodule: hook}``) watching; its output, or None when a hook ended
    the pass early."""
    with torch.no_grad(), _eval_mode(module), forward_pass(), _watching(hooks or {}, pre):
        try:
            return module(X)
        except _Stop:
            return None


def calls(module, X, names, *, every=False):
    """The dotted ``names`` of submodules in the order of their first call on ``X`` (with
    ``every``: one entry per call, repeated calls included); those never called are left
    out."""
    order = []
    submodules = dict(module.named_modules())

    def record(name):
        return lambda mod, args: order.append(name) if every or name not in order else None

    run(module, X, hooks={submodules[name]: record(name) for name in names})
    return order


def inputs(module, X, names):
    """The first input of each submodule in ``names`` (dotted names) when ``module`` runs on
    ``X``, by name; the pass stops once every one is captured, so the rest of the network
    does not run. Raises RuntimeError naming a module that was not called."""
    captured = {}
    submodules = dict(module.named_modules())

    def capture(name):
        def hook(mod, args):
            captured.setdefault(name, args[0])
            if len(captured) == len(names):
                raise _Stop
        return hook

    run(module, X, hooks={submodules[name]: capture(name) for name in set(names)})
    missing = [name for name in names if name not in captured]
    if missing:
        raise RuntimeError(f"Module {missing[0]!r} was not called in the forward pass.")
    return captured


def outputs(module, X):
    """``module(X)``'s output and, for every submodule, the first output it gave."""
    seen = {}

    def record(name):
        return lambda mod, args, output: seen.setdefault(name, first_output(output))

    result = run(module, X, hooks={sub: record(name) for name, sub in module.named_modules()},
                 pre=False)
    return result, seen
