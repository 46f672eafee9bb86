"""The one training primitive and the one scoring primitive.

Every strategy is a schedule of two operations (see ``flexsk/strategies``):

* :meth:`FineTuning.tune`: train a selection of units, starting from given
  weights, until validation accuracy stops improving; restore the best weights.
* :meth:`FineTuning.score`: validation accuracy of some weights.
"""

import contextlib
import copy
import os
import threading
import warnings
import zlib
from dataclasses import dataclass, field

import torch
from joblib import Parallel, delayed

from . import _surgery

__all__ = ["TargetData", "Optimization", "Tuned", "FineTuning", "SkorchClassifierLoss",
           "PROCESS_LOCK"]

#: Held by every fit and prediction: torch's global random generator (dropout)
#: and torch.fx tracing (which patches ``nn.Module.__call__``) are process-wide,
#: so two threads training or tracing at once would disturb each other.
PROCESS_LOCK = threading.RLock()


@dataclass
class TargetData:
    """Target training and validation tensors, already on the training device.

    Labels are indices into ``classes``, the output columns of the net that
    the target task uses.
    """

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    classes: torch.Tensor


@dataclass
class Optimization:
    """How to train: taken from the base net, overridden by FlexTuner."""

    optimizer: type
    optimizer_kwargs: dict
    lr: float
    batch_size: int
    max_epochs: int
    patience: object  # int or None
    get_loss: object  # callable(gathered outputs, y) -> loss
    probabilities: bool  # whether the net outputs probabilities (NLLLoss)
    eval_batch_size: int = 1024
    autocast_dtype: object = None  # e.g. torch.bfloat16: mixed precision forward passes


class SkorchClassifierLoss:
    """:meth:`skorch.NeuralNetClassifier.get_loss`, without the net.

    The same computation (log of probabilities for ``NLLLoss``, then the
    criterion), but picklable on its own: joblib workers then receive the
    criterion, not the skorch net, whose pickling needs the module's class to
    be importable by name.
    """

    def __init__(self, criterion):
        self.criterion = criterion

    def __call__(self, outputs, y):
        if isinstance(self.criterion, torch.nn.NLLLoss):
            outputs = torch.log(outputs + torch.finfo(outputs.dtype).eps)
        return self.criterion(outputs, y)


@dataclass
class Tuned:
    """A trained candidate: its module, best validation accuracy and history."""

    module: torch.nn.Module
    val_score: float
    n_epochs: int
    best_epoch: int
    val_history: list = field(default_factory=list)


def gather(outputs, classes, probabilities):
    """Restrict net outputs to the target's classes (renormalizing probabilities)."""
    gathered = outputs.index_select(1, classes)
    if probabilities:
        gathered = gathered / gathered.sum(dim=1, keepdim=True).clamp_min(
            torch.finfo(gathered.dtype).tiny)
    return gathered


def batches(n, batch_size, order=None):
    """Slices of ``range(n)`` (or of ``order``) in batches; no batch of size 1.

    A trailing batch of one sample would break BatchNorm in train mode, so it
    is merged into the previous batch.
    """
    bounds = list(range(0, n, batch_size)) + [n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]
    for start, stop in zip(bounds[:-1], bounds[1:]):
        yield order[start:stop] if order is not None else slice(start, stop)


def seed_for(base_seed, key):
    """A seed per candidate, independent of the order candidates are trained in."""
    return (base_seed + zlib.crc32(repr(key).encode())) % (2 ** 31)


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
    """

    def __init__(self, pretrained, units, data, optimization, base_seed,
                 progress=None, log=None, cache="auto", cache_bytes=2 ** 30, n_jobs=None):
        self.pretrained = pretrained
        self.units = units
        self.by_name = {unit.name: unit for unit in units}
        self.data = data
        self.optimization = optimization
        self.base_seed = base_seed
        self.progress = progress
        self.log = log
        self.cache = cache
        self.cache_bytes = cache_bytes
        self.n_jobs = n_jobs
        self._pid = os.getpid()
        self._setup()

    def _setup(self):
        self._cuts = None  # built on first use: ft-all and ft-ss never cut
        self._cached = {}  # unit name -> (train inputs, val inputs)
        device = self.data.X_train.device
        self._device_ids = [device.index or 0] if device.type == "cuda" else []

    @property
    def cuts(self):
        """Where the pretrained net can be cut (:class:`~flexsk._surgery.Cuts`), or None."""
        if self._cuts is None and self.cache:
            self._cuts = _surgery.Cuts(self.pretrained.eval(), self.units, self.data.X_val[:2])
        return self._cuts

    def __getstate__(self):
        # Sent to joblib workers: no callbacks, no caches; cuts are rebuilt there.
        state = self.__dict__.copy()
        for name in ("_cuts", "_cached", "progress", "log"):
            state.pop(name)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state, progress=None, log=None)
        self._setup()

    # -- activation caching ------------------------------------------------------------

    def autocast(self):
        """Mixed precision for forward passes, when asked for."""
        dtype = self.optimization.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.data.X_train.device.type, dtype=dtype)

    def _fits_budget(self, unit_name, n_samples):
        if self.cache is True:
            return True
        with torch.no_grad(), self.autocast():
            sample = self.cuts.prefix(self.pretrained, unit_name)(self.data.X_val[:1])
        return sample.element_size() * sample.numel() * n_samples <= self.cache_bytes

    def cache_unit(self, selection):
        """The unit to cut before, when the selection's frozen prefix can be cached.

        Units before the earliest tuned unit are frozen and in eval mode, so
        their outputs are the same every epoch: computed once, reused.
        """
        if selection.units is None or selection.extra is not None or self.cuts is None:
            return None
        first = min(selection.units, key=self.units.index).name
        n_samples = len(self.data.X_train) + len(self.data.X_val)
        if first not in self.cuts or not self._fits_budget(first, n_samples):
            return None
        return first

    def _same_prefix(self, module, unit_name):
        """Whether ``module`` has the pretrained weights in every unit before ``unit_name``."""
        position = [u.name for u in self.units].index(unit_name)
        ours, theirs = self.pretrained.state_dict(), module.state_dict()
        if ours.keys() != theirs.keys():
            return False
        before = [k for k in ours if not any(u.owns(k) for u in self.units[position:])]
        return all(torch.equal(ours[k], theirs[k]) for k in before)

    def _inputs_of_units(self, names, X):
        """Inputs of several units' first modules, from one pretrained pass over X."""
        units = [self.by_name[name] for name in names]
        with self.autocast():
            chunks = [_surgery.unit_inputs(self.pretrained, units, X[idx])
                      for idx in batches(len(X), self.optimization.eval_batch_size)]
        return {name: torch.cat([chunk[name] for chunk in chunks]) for name in names}

    def _fit_together(self, names, n_samples):
        """Whether the inputs of all ``names`` on ``n_samples`` fit the cache budget."""
        if self.cache is True:
            return True
        sample = self._inputs_of_units(names, self.data.X_val[:1])
        per_sample = sum(t.element_size() * t.numel() for t in sample.values())
        return per_sample * n_samples <= self.cache_bytes

    def prefetch(self, keys):
        """Cache the prefixes of several runs in one pretrained pass, budget allowing.

        Flex cuts before every unit: one pass that records every unit's input
        replaces one prefix pass per unit.
        """
        names = list(dict.fromkeys(
            name for name in (self.cache_unit(self.selection(k)) for k in keys)
            if name is not None))
        data = self.data
        if len(names) < 2 or not self._fit_together(names, len(data.X_train) + len(data.X_val)):
            return
        train = self._inputs_of_units(names, data.X_train)
        val = self._inputs_of_units(names, data.X_val)
        self._cached = {name: (train[name], val[name]) for name in names}

    def cached_inputs(self, unit_name):
        """The pretrained prefix's outputs (the unit's inputs) on train and val data."""
        if unit_name not in self._cached:
            prefix = self.cuts.prefix(self.pretrained, unit_name).eval()
            with self.autocast():
                self._cached = {unit_name: tuple(
                    _run(prefix, X, self.optimization.eval_batch_size)
                    for X in (self.data.X_train, self.data.X_val))}
        return self._cached[unit_name]

    # -- selections ----------------------------------------------------------------

    def selection(self, key):
        """The :class:`~flexsk._surgery.Selection` for a unit name, tuple or "all"."""
        if key == "all":
            return _surgery.select(None)
        names = key if isinstance(key, tuple) else (key,)
        return _surgery.select(self.by_name[name] for name in names)

    # -- the two primitives ----------------------------------------------------------

    def score(self, module, X=None, y=None):
        """Accuracy of ``module`` (on validation data by default), in eval mode.

        ``module`` is left in eval mode; training sets its modes every epoch.
        """
        data, opt = self.data, self.optimization
        X = data.X_val if X is None else X
        y = data.y_val if y is None else y
        module.eval()
        correct = 0
        with torch.no_grad(), self.autocast():
            for idx in batches(len(X), opt.eval_batch_size):
                outputs = gather(module(X[idx]), data.classes, opt.probabilities)
                correct += (outputs.argmax(1) == y[idx]).sum().item()
        return correct / max(len(X), 1)

    def tune(self, key, *, start=None, selection=None, max_epochs=None, patience="default",
             keep="best"):
        """Fine-tune a selection of units until validation accuracy stops improving.

        Parameters
        ----------
        key : str, tuple of str or "all"
            What to tune; also names the run (its seed derives from it).
        start : torch.nn.Module, optional
            Starting weights; the pretrained net by default. Not modified.
        selection : Selection, optional
            Overrides the selection derived from ``key`` (ft-ss).
        max_epochs, patience : optional
            Override the FlexTuner settings. ``patience=None`` trains exactly
            ``max_epochs`` epochs.
        keep : {"best", "last"}
            Restore the best epoch (epoch 0, the starting weights, counts), or
            keep the last weights (Algorithm 3's single epoch of ft-all).

        Returns
        -------
        Tuned
        """
        opt, data = self.optimization, self.data
        max_epochs = opt.max_epochs if max_epochs is None else max_epochs
        patience = opt.patience if patience == "default" else patience
        selection = self.selection(key) if selection is None else selection
        module = copy.deepcopy(self.pretrained if start is None else start)
        params = selection.prepare(module)
        optimizer = opt.optimizer(params, lr=opt.lr, **opt.optimizer_kwargs)
        seed = seed_for(self.base_seed, key)
        generator = torch.Generator().manual_seed(seed)
        cut = self.cache_unit(selection)
        if cut is not None and start is not None and not self._same_prefix(start, cut):
            cut = None  # other weights before the cut: the cached prefix does not apply
        if cut is None:
            forward, X_train, X_val = module, data.X_train, data.X_val
        else:
            forward = self.cuts.suffix(module, cut)
            X_train, X_val = self.cached_inputs(cut)

        best_score = self.score(forward, X_val)
        best_epoch, best_state = 0, selection.state(module)
        history = [best_score]
        epoch = 0
        with torch.random.fork_rng(devices=self._device_ids):
            torch.manual_seed(seed)
            for epoch in range(1, max_epochs + 1):
                selection.train_mode(module)
                order = torch.randperm(len(X_train), generator=generator).to(X_train.device)
                for idx in batches(len(order), opt.batch_size, order):
                    optimizer.zero_grad(set_to_none=True)
                    with self.autocast():
                        outputs = gather(forward(X_train[idx]), data.classes,
                                         opt.probabilities)
                        loss = opt.get_loss(outputs, data.y_train[idx])
                    loss.backward()
                    optimizer.step()
                val_score = self.score(forward, X_val)
                history.append(val_score)
                if self.log is not None:
                    self.log(f"[{_describe(key)}] epoch {epoch}: loss {loss.item():.4f}, "
                             f"valid_acc {val_score:.4f}")
                if val_score > best_score:
                    best_score, best_epoch = val_score, epoch
                    best_state = selection.state(module)
                elif patience is not None and epoch - best_epoch >= patience:
                    break
        if keep == "best":
            _surgery.load_state(module, best_state)
        else:
            best_score, best_epoch = history[-1], epoch
        for param in module.parameters():
            param.requires_grad_(True)
        module.eval()
        if self.progress is not None:
            self.progress(_describe(key))
        return Tuned(module, best_score, epoch, best_epoch, history)

    def tune_many(self, keys):
        """:meth:`tune` each key from the pretrained weights; independent runs.

        With ``n_jobs`` other than 1 they run in parallel through joblib, on
        whatever backend is active (loky by default; dask or ray through
        :func:`joblib.parallel_config`). Each run's seed derives from its key,
        so results do not depend on the order or on ``n_jobs``.

        Backends that run tasks in this process (``"threading"``, a dask
        cluster with ``processes=False``) do not train: torch's random
        generator and :mod:`torch.fx` tracing are process-wide, so threads
        would disturb each other's runs. Their candidates train here, one at a
        time, with a warning.
        """
        if self.n_jobs in (None, 1):
            self.prefetch(keys)
            return {key: self.tune(key) for key in keys}
        runs = Parallel(n_jobs=self.n_jobs, return_as="generator")(
            delayed(_tune)(self, key) for key in keys)
        tuned, here = {}, []
        for key, candidate in zip(keys, runs):
            if candidate is None:  # the worker is a thread of this process
                here.append(key)
                continue
            tuned[key] = candidate
            if self.progress is not None:
                self.progress(_describe(key))
        if here:
            warnings.warn(
                "The joblib backend runs tasks in threads of this process, which cannot train "
                "in parallel (torch's random generator and torch.fx tracing are process-wide); "
                "the candidates trained one at a time. Use a process-based backend (loky, the "
                "default, or dask with worker processes) for parallel training.",
                UserWarning, stacklevel=3)
            self.prefetch(here)
            tuned.update((key, self.tune(key)) for key in here)
        return {key: tuned[key] for key in keys}

    def proxy_scores(self, donor):
        """Validation accuracy of every proxy net: pretrained, one unit from ``donor``.

        Algorithm 2, lines 3-6. All proxies share the pretrained prefix, so
        one pretrained pass gives every unit's input, and each proxy only runs
        its suffix.
        """
        inputs = self._unit_inputs_on_val()
        workspace = copy.deepcopy(self.pretrained)
        scores = {}
        for unit in self.units:
            with _surgery.unit_from(workspace, donor, unit):
                if unit.name in inputs:
                    suffix = self.cuts.suffix(workspace, unit.name)
                    scores[unit.name] = self.score(suffix, inputs[unit.name])
                else:
                    scores[unit.name] = self.score(workspace)
        return scores

    def _unit_inputs_on_val(self):
        """Inputs of every cuttable unit on validation data, from one pretrained pass."""
        if self.cuts is None:
            return {}
        names = [u.name for u in self.units if u.name in self.cuts]
        if not names or not self._fit_together(names, len(self.data.X_val)):
            return {}
        return self._inputs_of_units(names, self.data.X_val)

    # -- zero-training selection ------------------------------------------------------

    def relative_gradient_norms(self, n_batches=4):
        """Relative gradient norm of every unit at the pretrained weights (Auto-RGN).

        For every parameter tensor ``p`` of a unit, ``||grad p|| / ||p||`` of
        the training loss on one minibatch of target training data, averaged
        over the first ``n_batches`` minibatches of a seeded shuffle (at most
        one epoch's worth); a unit's score is the mean over its tensors
        (Lee et al., "Surgical fine-tuning", ICLR 2023). Nothing is trained:
        gradients are taken on a copy of the pretrained net, with no optimizer
        step, and the whole net runs in eval mode, so BatchNorm statistics and
        dropout stay as pretrained. Tensors of norm zero are left out (their
        ratio is undefined); a unit with none scores 0.

        Parameters
        ----------
        n_batches : int, default=4
            Minibatches (of the training batch size) to average over.

        Returns
        -------
        dict
            Unit name -> score, in forward order.
        """
        data, opt = self.data, self.optimization
        module = copy.deepcopy(self.pretrained).eval()
        named = dict(module.named_parameters())
        owned = {unit.name: [n for n in named if unit.owns(n)] for unit in self.units}
        names = [n for unit_names in owned.values() for n in unit_names]
        tensors = [named[n].requires_grad_(True) for n in names]
        norms = {n: named[n].detach().norm().item() for n in names}
        seed = seed_for(self.base_seed, "rgn")
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(data.X_train), generator=generator).to(data.X_train.device)
        chosen = list(batches(len(order), opt.batch_size, order))[:n_batches]
        ratios = dict.fromkeys(names, 0.0)
        with torch.random.fork_rng(devices=self._device_ids):
            torch.manual_seed(seed)
            for idx in chosen:
                with self.autocast():
                    outputs = gather(module(data.X_train[idx]), data.classes,
                                     opt.probabilities)
                    loss = opt.get_loss(outputs, data.y_train[idx])
                grads = torch.autograd.grad(loss, tensors, allow_unused=True)
                for name, grad in zip(names, grads):
                    if grad is not None and norms[name] > 0:
                        ratios[name] += grad.norm().item() / norms[name] / len(chosen)
        scores = {}
        for unit_name, unit_names in owned.items():
            scored = [ratios[n] for n in unit_names if norms[n] > 0]
            scores[unit_name] = sum(scored) / len(scored) if scored else 0.0
        return scores


def _tune(fine_tuning, key):
    if os.getpid() == fine_tuning._pid:
        return None  # a thread of the fitting process: tune_many trains it there
    return fine_tuning.tune(key)


def _run(module, X, batch_size):
    with torch.no_grad():
        return torch.cat([module(X[idx]) for idx in batches(len(X), batch_size)])


def _describe(key):
    return "+".join(key) if isinstance(key, tuple) else key
