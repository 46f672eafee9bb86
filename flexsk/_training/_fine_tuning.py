"""The training primitive and the scoring primitive.

Every strategy (``flexsk/_strategies``) is a schedule of two operations:

* :meth:`FineTuning.tune`: train a selection of units, from given weights,
  until validation stops improving; restore the best weights.
* :meth:`FineTuning.evaluate`: validation accuracy and loss of some weights.

Models are ranked by validation accuracy, then validation loss (lower wins),
then forward order (:func:`rank`); early stopping uses the same rule to decide
whether an epoch improved.
"""

import contextlib
import copy
import math
import os
import threading
import warnings
from dataclasses import dataclass, field

import torch
from joblib import Parallel, delayed, effective_n_jobs

from .. import _surgery
from .._locks import forward_pass
from .._text import key_name
from ._cache import ActivationCache
from ._data import TargetData, gather, seed_for

__all__ = ["Evaluation", "Tuned", "FineTuning", "rank", "LOSS_RTOL"]

#: An epoch with the same validation accuracy improves only if its validation
#: loss falls by more than this fraction of the best loss so far.
LOSS_RTOL = 1e-4


@dataclass(frozen=True)
class Evaluation:
    """Validation accuracy and loss (the criterion on the target classes) of some weights."""

    accuracy: float
    loss: float

    @property
    def finite(self):
        return math.isfinite(self.loss)

    def improves_on(self, other):
        """Higher accuracy, or the same accuracy and a loss lower by more than LOSS_RTOL."""
        if not self.finite:
            return False
        if other is None or not other.finite or self.accuracy > other.accuracy:
            return True
        return (self.accuracy == other.accuracy
                and self.loss < other.loss - LOSS_RTOL * abs(other.loss))


def rank(evaluations):
    """Keys of ``evaluations`` from best to worst.

    Higher accuracy first, then lower loss, then the earlier key: callers list
    units in forward order and ``"all"`` last. Evaluations whose loss is not
    finite (diverged runs) come last.
    """
    keys = list(evaluations)
    return sorted(keys, key=lambda key: (not evaluations[key].finite,
                                         -evaluations[key].accuracy,
                                         evaluations[key].loss if evaluations[key].finite
                                         else math.inf,
                                         keys.index(key)))


@dataclass
class Tuned:
    """A trained candidate: its module and what its run saw on validation.

    Attributes
    ----------
    module : torch.nn.Module
        The weights kept: the best epoch's (or the last, for ``keep_best=False``).
    evaluation : Evaluation or None
        Of the kept weights; None when the run had no validation data (a refit).
    n_epochs : int
        Epochs trained, counting a partial last one.
    best_epoch : int
        The epoch whose weights were kept (0: the starting weights).
    n_steps : int
        Optimizer steps taken.
    steps_per_epoch : int
    history : list of Evaluation
        Epoch 0 (the starting weights) first.
    diverged : bool
        The training loss (or the validation loss) became non-finite; the run
        stopped there.
    improved : bool
        The kept weights rank better than the starting weights.
    """

    module: torch.nn.Module
    evaluation: object
    n_epochs: int
    best_epoch: int
    n_steps: int = 0
    steps_per_epoch: int = 1
    history: list = field(default_factory=list)
    diverged: bool = False
    improved: bool = False

    @property
    def val_score(self):
        return self.evaluation.accuracy

    @property
    def val_loss(self):
        return self.evaluation.loss


class FineTuning:
    """The shared state of one ``fit``: pretrained weights, units, data, settings.

    Parameters
    ----------
    pretrained : torch.nn.Module
        The pretrained network on the training device. Never modified.
    units : list of Unit
        In forward order.
    data : TargetData
    optimization : Optimization
    base_seed : int
    progress : callable or None
        Called with a short description after each training run.
    log : callable or None
        Called with one line per epoch (verbose >= 2).
    cache : "auto", bool
        Activation caching of frozen prefixes (FlexTuner's ``activation_cache``).
    cache_bytes : int
        Budget of the cache for ``cache="auto"``.
    n_jobs : int or None
        Parallel jobs for :meth:`tune_many`.

    Attributes
    ----------
    runs : list of (key, Tuned)
        Every training run of this fit, in the order they finished.
    """

    def __init__(self, pretrained, units, data, optimization, base_seed, *,
                 progress=None, log=None, cache="auto", cache_bytes=2 ** 30, n_jobs=None):
        self.pretrained = pretrained
        self.units = units
        self.by_name = {unit.name: unit for unit in units}
        self.data = data
        self.optimization = optimization
        self.base_seed = base_seed
        self.progress = progress
        self.log = log
        self.n_jobs = n_jobs
        self.cache = ActivationCache(pretrained, units, data, enabled=cache, budget=cache_bytes,
                                     eval_batch_size=optimization.eval_batch_size,
                                     autocast=self.autocast)
        self.runs = []
        self._pretrained_evaluation = None
        self.monitor = None  # monitor(key, epoch, module, evaluation) after each (studies)

    def __getstate__(self):
        # Sent to joblib workers: no callbacks, no record of runs.
        return {**self.__dict__, "progress": None, "log": None, "runs": [], "monitor": None}

    @property
    def stopping(self):
        """The default :class:`Stopping` of a run (FlexTuner's max_epochs and patience)."""
        return self.optimization.stopping

    @property
    def device_ids(self):
        device = self.data.device
        return [device.index or 0] if device.type == "cuda" else []

    def autocast(self):
        """Mixed precision for forward passes, when asked for."""
        dtype = self.optimization.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.data.device.type, dtype=dtype)

    def on_all_data(self):
        """A FineTuning like this one whose training data are the training and
        validation data together, and which has no validation data (refit)."""
        data = TargetData(train=self.data.train.concat(self.data.val), val=None,
                          classes=self.data.classes)
        return FineTuning(self.pretrained, self.units, data, self.optimization,
                          self.base_seed, progress=self.progress, log=self.log,
                          cache=self.cache.enabled, cache_bytes=self.cache.budget,
                          n_jobs=self.n_jobs)

    # -- candidates --------------------------------------------------------------------

    def selection(self, key):
        """The :class:`~flexsk._surgery.Selection` for a unit name, tuple or "all"."""
        if key == "all":
            return _surgery.select(None)
        names = key if isinstance(key, tuple) else (key,)
        return _surgery.select(self.by_name[name] for name in names)

    def _candidate(self, key, start):
        """A trainable copy of ``start`` for ``key``, its Selection, and what ends the run.

        ``"ss"`` (ft-ss) adds scale-and-shift parameters to every layer outside
        the last unit, trained with the last unit and folded back into plain
        weights at the end.
        """
        module = copy.deepcopy(self.pretrained if start is None else start)
        if key == "ss":
            selection = _surgery.add_scale_shift(module, self.units[-1])
            return module, selection, _surgery.fold_scale_shift
        return module, self.selection(key), None

    # -- the two primitives ------------------------------------------------------------

    def evaluate(self, module, samples=None):
        """Accuracy and mean loss of ``module`` on ``samples`` (validation data by
        default), in eval mode. ``module`` is left in eval mode."""
        opt, classes = self.optimization, self.data.classes
        samples = self.data.val if samples is None else samples
        module.eval()
        correct, loss_sum = 0, 0.0
        with torch.no_grad(), self.autocast():
            for X, y in samples.eval_batches(opt.eval_batch_size):
                with forward_pass():
                    outputs = gather(module(X), classes, opt.probabilities).float()
                correct += int((outputs.argmax(1) == y).sum())
                loss_sum += float(opt.get_loss(outputs, y)) * len(y)
        n = max(len(samples), 1)
        return Evaluation(correct / n, loss_sum / n)

    @property
    def pretrained_evaluation(self):
        """The pretrained net's :class:`Evaluation` (computed once)."""
        if self._pretrained_evaluation is None:
            self._pretrained_evaluation = self.evaluate(copy.deepcopy(self.pretrained))
        return self._pretrained_evaluation

    def tune(self, key, *, start=None, stopping=None, keep_best=True):
        """Fine-tune a selection of units until validation stops improving.

        Parameters
        ----------
        key : str or tuple of str
            What to tune: a unit name, a tuple of unit names, ``"all"`` or
            ``"ss"``; it also names the run (its seed derives from it).
        start : torch.nn.Module, optional
            Starting weights; the pretrained net by default. Not modified.
        stopping : Stopping, optional
            How long the run lasts; :attr:`stopping` by default.
        keep_best : bool, default=True
            Restore the best epoch (epoch 0, the starting weights, counts), or
            keep the last weights (Algorithm 3's single epoch of ft-all, a refit).

        Returns
        -------
        Tuned
        """
        opt, data = self.optimization, self.data
        stopping = self.stopping if stopping is None else stopping
        module, selection, finish = self._candidate(key, start)
        params = selection.prepare(module)
        optimizer = opt.optimizer(params, lr=opt.lr, **opt.optimizer_kwargs)
        seed = seed_for(self.base_seed, key)
        generator = torch.Generator().manual_seed(seed)
        cut = self.cache.cut_for(selection)
        if cut is not None and start is not None and not self._same_prefix(start, cut):
            cut = None  # other weights before the cut: the cached prefix does not apply
        train_forward, train = module, data.train
        forward, val = module, data.val  # evaluation
        if cut is not None:
            cached_train, cached_val = self.cache.inputs(cut)
            suffix = self.cache.suffix(module, cut)
            if cached_train is not None:
                train_forward, train = suffix, cached_train
            if cached_val is not None:
                forward, val = suffix, cached_val

        best = self.evaluate(forward, val) if val is not None else None
        history = [best]
        if self.monitor is not None and best is not None:
            self.monitor(key, 0, module, best)
        best_epoch, best_state = 0, selection.state(module)
        epoch = n_steps = 0
        diverged = False
        steps_per_epoch = max(1, math.ceil(len(train) / opt.batch_size))
        with torch.random.fork_rng(devices=self.device_ids):
            torch.manual_seed(seed)
            for epoch in range(1, stopping.max_epochs + 1):
                selection.train_mode(module)
                finite = torch.ones((), dtype=torch.bool, device=data.device)
                for X, y in train.train_batches(opt.batch_size, generator):
                    optimizer.zero_grad(set_to_none=True)
                    with self.autocast(), forward_pass():
                        loss = opt.get_loss(
                            gather(train_forward(X), data.classes, opt.probabilities), y)
                    loss.backward()
                    optimizer.step()
                    finite &= torch.isfinite(loss.detach())
                    n_steps += 1
                    if stopping.max_steps is not None and n_steps >= stopping.max_steps:
                        break
                if not bool(finite):
                    diverged = True
                    break
                last_step = stopping.max_steps is not None and n_steps >= stopping.max_steps
                if val is None:
                    if last_step:
                        break
                    continue
                evaluation = self.evaluate(forward, val)
                history.append(evaluation)
                if self.monitor is not None:
                    self.monitor(key, epoch, module, evaluation)
                if self.log is not None:
                    self.log(f"[{key_name(key)}] epoch {epoch}: loss {float(loss.detach()):.4f}, "
                             f"valid_acc {evaluation.accuracy:.4f}, "
                             f"valid_loss {evaluation.loss:.4f}")
                if not evaluation.finite:
                    diverged = True
                    break
                if evaluation.improves_on(best):
                    best, best_epoch = evaluation, epoch
                    best_state = selection.state(module)
                elif stopping.patience is not None and epoch - best_epoch >= stopping.patience:
                    break
                if last_step:
                    break
        if keep_best or diverged:
            _surgery.load_state(module, best_state)
        else:
            best_epoch, best = epoch, history[-1]
        improved = best_epoch > 0 and (best is None or best.improves_on(history[0]))
        if diverged and best is not None:  # marked, so that rank() puts it last
            best = Evaluation(best.accuracy, math.nan)
        if finish is not None:
            finish(module)
        for param in module.parameters():
            param.requires_grad_(True)
        module.eval()
        tuned = Tuned(module, best, epoch, best_epoch, n_steps, steps_per_epoch, history,
                      diverged, improved)
        self._record(key, tuned)
        return tuned

    def _record(self, key, tuned):
        self.runs.append((key, tuned))
        if self.progress is not None:
            self.progress(key_name(key))

    def _same_prefix(self, module, unit_name):
        """Whether ``module`` has the pretrained weights in every unit before ``unit_name``."""
        position = [u.name for u in self.units].index(unit_name)
        ours, theirs = self.pretrained.state_dict(), module.state_dict()
        if ours.keys() != theirs.keys():
            return False
        before = [k for k in ours if not any(u.owns(k) for u in self.units[position:])]
        return all(torch.equal(ours[k], theirs[k]) for k in before)

    # -- several independent runs ---------------------------------------------------------

    def prefetch(self, keys):
        """Cache the frozen prefixes of several runs in one pretrained pass, budget allowing."""
        cuts = [self.cache.cut_for(self.selection(key)) for key in keys if key != "ss"]
        self.cache.prefetch([name for name in cuts if name is not None])

    def tune_many(self, keys):
        """:meth:`tune` each key from the pretrained weights; independent runs.

        With ``n_jobs`` other than 1 they run in parallel through joblib, on
        whatever backend is active (loky by default; dask through
        :func:`joblib.parallel_config`). Each run's seed derives from its key,
        so results do not depend on the order or on ``n_jobs``.

        Backends that run tasks at the same time in threads of this process
        (``"threading"``, a dask cluster with ``processes=False``) do not
        train there: torch's random generator is process-wide, so concurrent
        runs would disturb each other. Their candidates train in the calling
        thread, one at a time, with a warning. Backends that run tasks in the
        calling thread (``"sequential"``, nested calls) train as they go.
        """
        if effective_n_jobs(self.n_jobs) == 1:
            self.prefetch(keys)
            return {key: self.tune(key) for key in keys}
        caller = (os.getpid(), threading.get_ident())
        runs = Parallel(n_jobs=self.n_jobs, return_as="generator")(
            delayed(_tune_task)(self, key, caller) for key in keys)
        tuned, deferred = {}, []
        for key, candidate in zip(keys, runs):
            if candidate is None:  # a concurrent thread of this process
                deferred.append(key)
            elif key not in tuned:
                tuned[key] = candidate
                if not any(run is candidate for _, run in self.runs):  # trained elsewhere
                    self._record(key, candidate)
        if deferred:
            warnings.warn(
                "The joblib backend runs tasks in concurrent threads of this process, which "
                "cannot train in parallel (torch's random generator is process-wide); the "
                "candidates trained one at a time. Use a process-based backend (loky, the "
                "default, or dask with worker processes) for parallel training.",
                UserWarning, stacklevel=3)
            self.prefetch(deferred)
            tuned.update((key, self.tune(key)) for key in deferred)
        return {key: tuned[key] for key in keys}


def _tune_task(fine_tuning, key, caller):
    pid, thread = caller
    if os.getpid() == pid and threading.get_ident() != thread:
        return None  # a concurrent thread of the fitting process: trained by the caller
    return fine_tuning.tune(key)
