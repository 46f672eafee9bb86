"""The training context of one fit: the training primitive and the scoring primitives.

Every strategy (``flexsk/_strategies``, or a user's) is a schedule over the
methods of :class:`FineTuning` (the :class:`~flexsk.strategies.TrainingContext`):

* :meth:`FineTuning.tune`: train a selection of units, from given weights,
  until validation stops making progress; keep the best epoch. Its steps are
  set-up, epochs, evaluation and stopping, and finish;
* :meth:`FineTuning.tune_many`: independent runs, in parallel with ``n_jobs``;
* :meth:`FineTuning.evaluate`, :meth:`FineTuning.proxy_evaluations` and
  :meth:`FineTuning.relative_gradient_norms`: scores of given weights.

Models are ranked by validation accuracy (or FlexTuner's ``scoring``), then
validation loss (lower wins), then forward order (:func:`rank`). A run keeps the
weights of its best epoch under that rule, and goes on while it makes progress in
either signal: a new best under the rule, or a new minimum of the validation loss.
"""

import contextlib
import copy
import math
import os
import threading
import time
import warnings
from dataclasses import dataclass, field

import torch
from joblib import Parallel, cpu_count, delayed, effective_n_jobs, parallel_config
from joblib.parallel import BACKENDS, get_active_backend
from skorch.callbacks import LRScheduler

from .. import _surgery
from .._config import get_config
from .._ranking import ranked
from .._locks import forward_pass
from .._text import key_name
from . import _scores
from ._cache import ActivationCache
from ._data import TargetData, gather, seed_for

__all__ = ["Evaluation", "EpochRecord", "Training", "Tuned", "FineTuning", "Patience", "rank",
           "LOSS_RTOL"]

#: An epoch with the same validation accuracy improves only if its validation
#: loss falls by more than this fraction of the best loss so far.
LOSS_RTOL = 1e-4


@dataclass(frozen=True)
class Evaluation:
    """The validation score, accuracy and loss (the criterion on the target classes) of
    some weights.

    Parameters
    ----------
    accuracy : float
        Fraction of validation samples classified correctly.
    loss : float
        Mean validation loss; NaN for a run that diverged.
    score : float or None, default=None
        FlexTuner's ``scoring`` on validation data (higher is better); None
        when ``scoring`` is None, and the accuracy ranks.

    Examples
    --------
    >>> from flexsk.strategies import Evaluation
    >>> Evaluation(0.9, 0.3).improves_on(Evaluation(0.9, 0.4))
    True
    >>> Evaluation(0.8, 0.3, score=0.7).value
    0.7
    """

    accuracy: float
    loss: float
    score: object = None

    @property
    def finite(self):
        return math.isfinite(self.loss)

    @property
    def value(self):
        """What ranks: the score, or the accuracy without one."""
        return self.accuracy if self.score is None else self.score

    def improves_on(self, other):
        """A higher value (score, or accuracy), or the same value and a loss lower by more
        than LOSS_RTOL."""
        if not self.finite:
            return False
        if other is None or not other.finite or self.value > other.value:
            return True
        return (self.value == other.value
                and self.loss < other.loss - LOSS_RTOL * abs(other.loss))


def rank(evaluations):
    """Keys of ``evaluations`` (:class:`Evaluation`) from best to worst.

    The ranking rule (:mod:`flexsk._ranking`): higher value first (the
    ``scoring``'s score, or the accuracy), then lower loss, then the earlier
    key (callers list units in forward order and ``"all"`` last);
    evaluations whose loss is not finite (diverged runs) last.

    Parameters
    ----------
    evaluations : dict
        Key -> :class:`Evaluation`, in forward order.

    Returns
    -------
    list

    Examples
    --------
    >>> from flexsk.strategies import Evaluation, rank
    >>> rank({"conv1": Evaluation(0.8, 0.5), "fc1": Evaluation(0.8, 0.4),
    ...       "all": Evaluation(0.7, 0.3)})
    ['fc1', 'conv1', 'all']
    """
    return ranked({key: e.value for key, e in evaluations.items()},
                  {key: e.loss for key, e in evaluations.items()})


@dataclass(frozen=True)
class Training:
    """How a run trained, so that a refit can train it again on more data.

    Parameters
    ----------
    what : str or tuple of str
        What trained: a unit name, a tuple of unit names, ``"all"`` or ``"ss"``.
    lr_scales : dict, callable or None
        Learning-rate factors per parameter name (the others 1), or a callable
        ``lr_scales(ctx, module, epoch) -> dict`` asked before every epoch;
        None: none.
    start : Tuned or None
        The run it continued from (``tune(start=tuned)``); None: the pretrained
        weights, or weights given as a module.
    """

    what: object
    lr_scales: object = None
    start: object = None


@dataclass
class Tuned:
    """A trained candidate: its module and what its run saw on validation.

    What :meth:`TrainingContext.tune <flexsk.strategies.TrainingContext.tune>`
    returns; strategies read it, and never build one.

    Parameters
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
    history : list of Evaluation or None
        One per epoch, epoch 0 (the starting weights) first; None for an
        epoch the run did not validate (see ``Stopping.validate_every``).
    diverged : bool
        The training loss (or the validation loss) became non-finite; the run
        stopped there.
    improved : bool
        The kept weights rank better than the starting weights (for a run
        of a new head alone, which starts from a linear probe: than the
        pretrained net with its new head as initialized).
    from_pretrained : bool
        The run started from the pretrained weights (``start=None``), so that
        its epochs count from them (the refit retrains for that many).
    key : str, tuple of str or None
        The run's name: the key passed to ``tune`` (its ``name``, when given).
    training : Training or None
        How it trained (what, learning-rate factors, the run it continued
        from), for a refit to train it again.
    n_trained : int
        Parameters the run trained (numbers, not tensors).
    seconds : float
        Wall-clock seconds of the run.
    folds : list of Evaluation
        With ``cv``, each fold's evaluation (``evaluation`` is their mean);
        empty otherwise.
    at_cap : bool
        The run ended at its ``max_epochs`` (or step budget) while still
        improving: patience had not run out and its best epoch was among its
        last ``patience`` epochs, so more epochs would likely find a better
        model.

    Examples
    --------
    >>> from flexsk.strategies import Outcome
    >>> def last_unit(ctx):
    ...     tuned = ctx.tune(ctx.units[-1].name)  # a Tuned
    ...     return Outcome(ctx.units[-1].name, {ctx.units[-1].name: tuned})
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
    from_pretrained: bool = True
    at_cap: bool = False
    key: object = None
    training: object = None
    n_trained: int = 0
    seconds: float = 0.0
    folds: list = field(default_factory=list)

    @property
    def val_score(self):
        """What ranks the run: its validation score, or accuracy without ``scoring``."""
        return self.evaluation.value

    @property
    def val_loss(self):
        return self.evaluation.loss


@dataclass
class EpochRecord:
    """What one epoch of one training run saw: passed to FlexTuner's ``on_epoch``.

    Parameters
    ----------
    candidate : str or tuple of str
        The run's key: a unit name, a tuple of unit names, ``"all"`` or ``"ss"``.
    epoch : int
        0 for the starting weights (before any training), then 1, 2, ...
    train_loss : float or None
        Mean training loss over the epoch's minibatches; None at epoch 0.
    val_accuracy, val_loss : float or None
        Validation accuracy and loss after the epoch; None in a refit, which
        has no validation data, and after an epoch the run does not validate
        (FlexTuner's ``validate_every``).
    n_steps : int
        Optimizer steps so far in this run.
    refit : bool
        Whether the run is the refit (training and validation data together).
    val_score : float or None
        FlexTuner's ``scoring`` on validation data after the epoch; None
        without ``scoring`` and whenever ``val_accuracy`` is None.
    lr : tuple of float
        The learning rate each of the optimizer's parameter groups trained
        with in this epoch (at epoch 0, the first epoch's; one group, unless
        the run scales learning rates: the recipes ``"llrd"`` and
        ``"auto-rgn"``, whose epoch 0 has none yet). A base net's
        ``LRScheduler`` steps after the epoch, so the next record shows it.
    module : torch.nn.Module
        The run's network as it is now, in eval mode after a validation pass.
        Read it (score it, save a copy); do not modify it.

    Examples
    --------
    >>> from flexsk import FlexTuner
    >>> records = []
    >>> tuner = FlexTuner(net, on_epoch=records.append)  # doctest: +SKIP
    >>> tuner.fit(X, y)  # doctest: +SKIP
    >>> [(r.candidate, r.epoch, r.val_loss) for r in records][:2]  # doctest: +SKIP
    [('all', 0, 0.52), ('all', 1, 0.41)]
    """

    candidate: object
    epoch: int
    train_loss: object
    val_accuracy: object
    val_loss: object
    n_steps: int
    refit: bool
    module: torch.nn.Module = field(repr=False)
    lr: tuple = ()
    val_score: object = None


class Patience:
    """The early-stopping rule, on a run's validation history (replayable on a recorded one).

    It keeps the best epoch under the ranking rule (:meth:`Evaluation.improves_on`)
    and says when to stop: after ``patience`` epochs without progress in either
    signal, a new best under the ranking rule or a new minimum of the validation
    loss (by more than LOSS_RTOL). A net that starts confidently wrong lowers
    its loss for many epochs before its accuracy moves.

    Parameters
    ----------
    patience : int or None
        None: never stop.
    start : Evaluation
        Of the starting weights (epoch 0), which count as a candidate epoch.
    rtol : float, default=LOSS_RTOL
        A new minimum of the validation loss counts as progress when it is
        lower than the lowest so far by more than this fraction.

    Examples
    --------
    >>> from flexsk.strategies import Evaluation, Patience
    >>> rule = Patience(2, Evaluation(0.5, 1.0))
    >>> [rule.update(epoch, Evaluation(0.5, 1.0)) for epoch in (1, 2)]
    [False, True]
    >>> rule.best_epoch
    0
    """

    def __init__(self, patience, start, rtol=LOSS_RTOL):
        self.patience, self.rtol = patience, rtol
        self.best, self.best_epoch, self.last_progress = start, 0, 0
        self.lowest = start.loss if start is not None and start.finite else math.inf
        self.better = False  # whether the last update found a new best epoch

    def update(self, epoch, evaluation):
        """Record a validated epoch; True when patience runs out."""
        self.better = evaluation.improves_on(self.best)
        lower = evaluation.loss < self.lowest - self.rtol * abs(self.lowest)
        self.lowest = min(self.lowest, evaluation.loss)
        if self.better:
            self.best, self.best_epoch = evaluation, epoch
        if self.better or lower:
            self.last_progress = epoch
            return False
        return self.patience is not None and epoch - self.last_progress >= self.patience


@dataclass
class _Run:
    """The state of one training run, between its steps (set-up, epochs, finish)."""

    key: object  # the run's name
    module: torch.nn.Module
    selection: object
    finish: object
    optimizer: object
    stopping: object
    seed: int
    generator: torch.Generator
    train_forward: object
    train: object
    forward: object
    val: object
    steps_per_epoch: int
    schedules: object = None
    history: list = field(default_factory=list)
    rule: object = None  # Patience, when the run validates
    best_state: object = None
    epoch: int = 0
    n_steps: int = 0
    diverged: bool = False
    at_cap: bool = False
    from_pretrained: bool = True
    reference: object = None  # what "improved" compares with, when not the start
    training: bool = False  # whether the modules are in the run's training modes
    plan: object = None  # Training
    params: list = field(default_factory=list)  # (name, parameter) of what trains

    @property
    def budget(self):
        """Optimizer steps the run may take at most."""
        steps = self.stopping.max_epochs * self.steps_per_epoch
        return steps if self.stopping.max_steps is None else min(steps, self.stopping.max_steps)

    @property
    def best(self):
        return None if self.rule is None else self.rule.best

    @property
    def best_epoch(self):
        return 0 if self.rule is None else self.rule.best_epoch

    def begin(self, evaluation, state):
        self.best_state = state
        self.history = [evaluation]
        if evaluation is not None:
            self.rule = Patience(self.stopping.patience, evaluation)

    def update(self, epoch, evaluation):
        """Keep the best epoch under the ranking rule; True when patience runs out."""
        stop = self.rule.update(epoch, evaluation)
        if self.rule.better:
            self.best_state = self.selection.state(self.module)
        return stop


class _Schedules:
    """The base net's LRScheduler and GradientNormClipping callbacks, applied to one run.

    Each run gets fresh copies, started on the run's optimizer as skorch starts
    them on a net's (``on_train_begin``), and called at the same points of the
    loop: ``on_grad_computed`` between backward and the optimizer step,
    ``on_batch_end`` after the step, ``on_epoch_end`` after validation. A
    ``ReduceLROnPlateau`` reads ``train_loss``, ``valid_loss`` or
    ``valid_acc`` from the run's history; on an epoch without validation (a
    refit's, or one that ``validate_every`` skips), one that monitors a
    validation score is not stepped.
    """

    def __init__(self, callbacks, optimizer, params):
        from skorch.history import History

        self.callbacks = [copy.deepcopy(callback).initialize() for callback in callbacks]
        self.params = [("", param) for param in params]
        self.net = _OptimizerView(optimizer, History())
        for callback in self.callbacks:
            callback.on_train_begin(self.net)

    def grad_computed(self):
        for callback in self.callbacks:
            callback.on_grad_computed(self.net, named_parameters=self.params)

    def epoch_begin(self):
        if self.callbacks:
            self.net.history.new_epoch()
            self.net.history.record("epoch", len(self.net.history))

    def batch_end(self):
        if self.callbacks:
            self.net.history.new_batch()
        for callback in self.callbacks:
            callback.on_batch_end(self.net, training=True)
        self._check_lr()

    def epoch_end(self, train_loss, evaluation):
        if not self.callbacks:
            return
        history = self.net.history
        history.record("train_loss", train_loss)
        if evaluation is not None:
            history.record("valid_loss", evaluation.loss)
            history.record("valid_acc", evaluation.accuracy)
        for callback in self.callbacks:
            monitor = getattr(callback, "monitor", None)
            if isinstance(getattr(callback, "lr_scheduler_", None),
                          torch.optim.lr_scheduler.ReduceLROnPlateau) and (
                    callable(monitor) and evaluation is None
                    or isinstance(monitor, str) and monitor not in history[-1]):
                continue  # an epoch without validation (a refit's, say) has none to read
            callback.on_epoch_end(self.net)
        self._check_lr()

    def _check_lr(self):
        """A schedule that sets a non-finite learning rate is the schedule's fault, not a
        divergence of training: say so."""
        if not self.callbacks:
            return
        lrs = [group["lr"] for group in self.net.optimizer_.param_groups]
        if not all(math.isfinite(lr) for lr in lrs):
            raise ValueError(f"base_net's LRScheduler set a non-finite learning rate "
                             f"({lrs[0]}): check its settings (gamma, factor, ...).")


class _OptimizerView:
    """What skorch's LRScheduler and GradientNormClipping read of a net."""

    def __init__(self, optimizer, history):
        self.optimizer_ = optimizer
        self.history = history


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
    progress : Progress or None
        Told when a run starts (its name and step budget), after each
        optimizer step, and when it finishes (FlexTuner's progress bar).
    log : callable or None
        Called with one line per epoch (verbose >= 2).
    on_epoch : callable or None
        Called with an :class:`EpochRecord` at epoch 0 and after every epoch of
        every run (FlexTuner's ``on_epoch``).
    cache : "auto", bool
        Activation caching of frozen prefixes (FlexTuner's ``activation_cache``).
    cache_bytes : int
        Budget of the cache for ``cache="auto"``.
    n_jobs : int or None
        Parallel jobs for :meth:`tune_many`.
    head : Unit or None
        A new output layer (FlexTuner's ``head="new"``): it starts from
        nothing, so it trains in every run besides the run's own selection,
        and proxy nets take it from their donor.
    head_alone : callable or None
        ``head_alone()`` gives the weights a run that tunes the new head
        alone starts from (a linear probe's start); None: ``pretrained``.
    config : dict or None
        flexsk's settings (:func:`flexsk.get_config`) for this fit, read once
        when it starts; None reads them now.
    scoring : ValidationScoring or None
        FlexTuner's ``scoring``, ready to score validation outputs
        (:mod:`flexsk._scoring`); None ranks by accuracy.

    Attributes
    ----------
    runs : list of (key, Tuned)
        Every training run of this fit, in the order they finished.
    all_data : FineTuning or None
        The refit's context, when the caller builds it (a new head then
        starts from all the data); None: :meth:`on_all_data` derives it.
    """

    def __init__(self, pretrained, units, data, optimization, base_seed, *,
                 progress=None, log=None, on_epoch=None, cache="auto", cache_bytes=2 ** 30,
                 n_jobs=None, head=None, head_alone=None, config=None, scoring=None):
        self.pretrained = pretrained
        self.config = get_config() if config is None else config
        self.scoring = scoring
        self.head = head
        self.head_alone = head_alone
        self._alone_start = None
        self.units = units
        self.by_name = {unit.name: unit for unit in units}
        self.data = data
        self.optimization = optimization
        self.base_seed = base_seed
        self.progress = progress
        self.log = log
        self.on_epoch = on_epoch
        self.n_jobs = n_jobs
        self.cache = ActivationCache(pretrained, units, data, enabled=cache, budget=cache_bytes,
                                     eval_batch_size=optimization.eval_batch_size,
                                     autocast=self.autocast)
        self.runs = []
        self.all_data = None
        self._pretrained_evaluation = None

    def __getstate__(self):
        # Sent to joblib workers: no progress bar or printing, no record of runs; the
        # user's on_epoch goes along and runs in the worker.
        return {**self.__dict__, "progress": None, "log": None, "runs": []}

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
        if self.all_data is not None:
            return self.all_data
        data = TargetData(train=self.data.train.concat(self.data.val), val=None,
                          classes=self.data.classes)
        return FineTuning(self.pretrained, self.units, data, self.optimization,
                          self.base_seed, progress=self.progress, log=self.log,
                          on_epoch=self.on_epoch, cache=self.cache.enabled,
                          cache_bytes=self.cache.budget, n_jobs=self.n_jobs, head=self.head,
                          config=self.config, scoring=self.scoring)

    # -- candidates --------------------------------------------------------------------

    def selection(self, key):
        """The :class:`~flexsk._surgery.Selection` for a unit name, tuple or "all".

        With a new head, the head trains with every selection.
        """
        if key == "all":
            return _surgery.select(None)
        names = key if isinstance(key, tuple) else (key,)
        unknown = [name for name in names if name not in self.by_name]
        if unknown:
            raise ValueError(f"Cannot tune {key!r}: {', '.join(map(repr, unknown))} is not a "
                             f"unit. The units are {list(self.by_name)}, and the keys "
                             f"'all' and 'ss'.")
        return _surgery.select(self.with_head([self.by_name[name] for name in names]))

    def start_for(self, key):
        """The weights a run of ``key`` starts from by default: the pretrained net, or for
        a run that tunes the new head alone, ``head_alone()`` (computed once)."""
        names = key if isinstance(key, tuple) else (key,)
        if self.head_alone is None or not all(  # "all", "ss" and unknown keys are no units
                name in self.by_name and set(self.by_name[name].members) <= set(
                    self.head.members) for name in names):
            return self.pretrained
        if self._alone_start is None:
            self._alone_start = self.head_alone()
        return self._alone_start

    def with_head(self, units):
        """``units`` and the new head, unless one of them holds it already."""
        head = self.head
        if head is None or any(unit.owns(f"{head.modules[0]}.weight") for unit in units):
            return tuple(units)
        return tuple(units) + (head,)

    def _candidate(self, key, start):
        """A trainable copy of ``start`` for ``key``, its Selection, and what ends the run.

        ``"ss"`` (ft-ss) adds scale-and-shift parameters to every layer outside
        the last unit, trained with the last unit and folded back into plain
        weights at the end.
        """
        module = copy.deepcopy(self.start_for(key) if start is None else start)
        if key == "ss":
            selection = _surgery.add_scale_shift(module, self.with_head([self.units[-1]]))
            return module, selection, _surgery.fold_scale_shift
        return module, self.selection(key), None

    # -- the two primitives ------------------------------------------------------------

    def evaluate(self, module, samples=None):
        """Accuracy, mean loss and score (FlexTuner's ``scoring``) of ``module`` on
        ``samples`` (validation data by default), in eval mode. ``module`` is left in
        eval mode."""
        opt, classes = self.optimization, self.data.classes
        samples = self.data.val if samples is None else samples
        module.eval()
        correct, loss_sum, kept = 0, 0.0, []
        with torch.no_grad(), self.autocast():
            for X, y in samples.eval_batches(opt.eval_batch_size):
                with forward_pass():
                    outputs = gather(module(X), classes, opt.probabilities).float()
                correct += int((outputs.argmax(1) == y).sum())
                loss_sum += float(opt.get_loss(outputs, y)) * len(y)
                if self.scoring is not None:
                    kept.append((outputs.cpu(), y.cpu()))
        n = max(len(samples), 1)
        score = None
        if self.scoring is not None and kept:
            outputs = torch.cat([o for o, _ in kept])
            score = math.nan  # a diverged run's outputs rank nothing (its loss puts it last)
            if math.isfinite(loss_sum) and bool(torch.isfinite(outputs).all()):
                score = self.scoring.score(self, module, samples, outputs,
                                           torch.cat([t for _, t in kept]))
        return Evaluation(correct / n, loss_sum / n, score)

    def proxy_evaluations(self, donor):
        """Each unit's proxy net (the pretrained net with that unit from ``donor``),
        scored on validation data: unit name -> :class:`Evaluation`."""
        return _scores.proxy_evaluations(self, donor)

    def relative_gradient_norms(self, n_batches=4):
        """Each unit's relative gradient norm at the pretrained weights: unit name ->
        float (see :func:`~flexsk._training._scores.relative_gradient_norms`)."""
        return _scores.relative_gradient_norms(self, n_batches)

    @property
    def pretrained_evaluation(self):
        """The pretrained net's :class:`Evaluation` (computed once)."""
        if self._pretrained_evaluation is None:
            self._pretrained_evaluation = self.evaluate(copy.deepcopy(self.pretrained))
        return self._pretrained_evaluation

    def tune(self, key, *, start=None, stopping=None, keep_best=True, lr_scales=None,
             name=None):
        """Fine-tune a selection of units until validation stops making progress.

        Parameters
        ----------
        key : str or tuple of str
            What to tune: a unit name, a tuple of unit names, ``"all"`` or
            ``"ss"``.
        start : torch.nn.Module or Tuned, optional
            Starting weights; the pretrained net by default. Not modified. A
            :class:`Tuned` continues that run: a refit trains it first.
        stopping : Stopping, optional
            How long the run lasts; :attr:`stopping` by default.
        keep_best : bool, default=True
            Restore the best epoch (epoch 0, the starting weights, counts), or
            keep the last weights (Algorithm 3's single epoch of ft-all, a refit).
        lr_scales : dict or callable, optional
            Factors of the learning rate per parameter name (the others 1), or
            ``lr_scales(ctx, module, epoch) -> dict``, asked before every epoch
            (``epoch`` 0 before the first) with a fresh optimizer each time
            (Auto-RGN's rule).
        name : str, optional
            The run's name, ``key`` by default: its seed derives from it, and
            the :class:`Tuned` carries it (a recipe over ``"all"``, say).

        Returns
        -------
        Tuned
        """
        started = time.perf_counter()
        name = key if name is None else name
        previous = start if isinstance(start, Tuned) else None
        plan = Training(key, lr_scales, previous)
        run = self._start(name, key, start if previous is None else previous.module,
                          self.stopping if stopping is None else stopping, plan)
        with torch.random.fork_rng(devices=self.device_ids):
            torch.manual_seed(run.seed)
            for epoch in range(1, run.stopping.max_epochs + 1):
                train_loss = self._train_epoch(run)
                if self._end_epoch(run, epoch, train_loss):
                    break
        tuned = self._finish(run, keep_best)
        tuned.seconds = time.perf_counter() - started
        self._record(name, tuned, run.budget)
        return tuned

    def _start(self, name, key, start, stopping, plan):
        """Set-up of a run: a trainable copy, its optimizer and schedules, epoch 0."""
        opt, data = self.optimization, self.data
        module, selection, finish = self._candidate(key, start)
        selection.prepare(module)
        params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        seed = seed_for(self.base_seed, name)
        run = _Run(key=name, module=module, selection=selection, finish=finish,
                   optimizer=None, stopping=stopping, seed=seed,
                   generator=torch.Generator().manual_seed(seed),
                   train_forward=module, train=data.train, forward=module, val=data.val,
                   steps_per_epoch=max(1, math.ceil(len(data.train) / opt.batch_size)),
                   from_pretrained=start is None, plan=plan, params=params)
        if callable(plan.lr_scales) and any(isinstance(callback, LRScheduler)
                                            for callback in opt.callbacks):
            raise ValueError(f"The run {key_name(name)!r} sets every tensor's learning rate "
                             f"before each epoch itself: it does not combine with "
                             f"base_net's LRScheduler.")
        # factors asked before every epoch: the first optimizer is made with the first epoch
        run.optimizer = None if callable(plan.lr_scales) else self._optimizer(run)
        if self.progress is not None:
            self.progress.start(key_name(name), run.budget, refit=data.val is None)
        run.schedules = _Schedules(opt.callbacks, run.optimizer, [p for _, p in params])
        cut = self.cache.cut_for(selection)
        if cut is not None and start is not None and not self._same_prefix(start, cut):
            cut = None  # other weights before the cut: the cached prefix does not apply
        if cut is not None:
            cached_train, cached_val = self.cache.inputs(cut)
            suffix = self.cache.suffix(module, cut)
            if cached_train is not None:
                run.train_forward, run.train = suffix, cached_train
            if cached_val is not None:
                run.forward, run.val = suffix, cached_val
        first = self.evaluate(run.forward, run.val) if run.val is not None else None
        if start is None and self.start_for(key) is not self.pretrained and first is not None:
            run.reference = self.pretrained_evaluation  # the pick must beat the pretrained net
        elif start is None and self._pretrained_evaluation is None:
            self._pretrained_evaluation = first  # the same weights: no second pass
        run.begin(first, selection.state(module))
        self._observe(run, 0, None, first)
        return run

    def _optimizer(self, run):
        """The run's optimizer: one parameter group per learning-rate factor."""
        opt, scales = self.optimization, run.plan.lr_scales
        if callable(scales):
            scales = scales(self, run.module, run.epoch)
        if not scales:
            params = [p for _, p in run.params]
            return opt.optimizer(params, lr=opt.lr, **opt.optimizer_kwargs)
        groups = {}
        for name, param in run.params:
            groups.setdefault(float(scales.get(name, 1.0)), []).append(param)
        return opt.optimizer([{"params": params, "lr": opt.lr * scale}
                              for scale, params in groups.items()],
                             lr=opt.lr, **opt.optimizer_kwargs)

    def _train_epoch(self, run):
        """One pass over the training data; the mean training loss (NaN if it diverged)."""
        opt, data = self.optimization, self.data
        if not run.training:  # a validation pass, or on_epoch, set eval mode
            run.selection.train_mode(run.module)
            run.training = True
        if callable(run.plan.lr_scales):  # asked anew, in training mode, a fresh optimizer
            run.optimizer = self._optimizer(run)
            run.schedules.net.optimizer_ = run.optimizer
        run.schedules.epoch_begin()
        loss_sum = torch.zeros((), device=data.device)
        n_batches = 0
        for X, y in run.train.train_batches(opt.batch_size, run.generator):
            run.optimizer.zero_grad(set_to_none=True)
            with self.autocast(), forward_pass():
                loss = opt.get_loss(gather(run.train_forward(X), data.classes,
                                           opt.probabilities), y)
            loss.backward()
            run.schedules.grad_computed()
            run.optimizer.step()
            run.schedules.batch_end()
            loss_sum += loss.detach().float()
            n_batches += 1
            run.n_steps += 1
            if self.progress is not None:
                self.progress.step()
            if run.stopping.max_steps is not None and run.n_steps >= run.stopping.max_steps:
                break
        return float(loss_sum) / max(n_batches, 1)

    def _end_epoch(self, run, epoch, train_loss):
        """Evaluation (on the run's schedule) and stopping after an epoch; True when the
        run ends here."""
        run.epoch = epoch
        if not math.isfinite(train_loss):
            run.diverged = True
            return True
        stopping = run.stopping
        last = epoch >= stopping.max_epochs or (
            stopping.max_steps is not None and run.n_steps >= stopping.max_steps)
        validate = run.val is not None and (last or stopping.validates(epoch))
        evaluation = self.evaluate(run.forward, run.val) if validate else None
        run.training = not validate and self.on_epoch is None
        run.history.append(evaluation)
        self._observe(run, epoch, train_loss, evaluation)
        run.schedules.epoch_end(train_loss, evaluation)
        if evaluation is None:
            return last
        if not evaluation.finite:
            run.diverged = True
            return True
        if run.update(epoch, evaluation):
            return True  # patience ran out
        run.at_cap = last and stopping.patience is not None and (
            epoch - run.best_epoch < stopping.patience)
        return last

    def _finish(self, run, keep_best):
        """The weights a run keeps, as plain trainable parameters, and its record."""
        module, best, best_epoch = run.module, run.best, run.best_epoch
        if keep_best or run.diverged:
            _surgery.load_state(module, run.best_state)
        else:
            best_epoch, best = run.epoch, run.history[-1]
        reference = run.history[0] if run.reference is None else run.reference
        improved = (best_epoch > 0 or run.reference is not None) and (
            best is None or best.improves_on(reference))
        if run.diverged and best is not None:  # marked, so that rank() puts it last
            best = Evaluation(best.accuracy, math.nan, best.score)
        if run.finish is not None:
            run.finish(module)
        for param in module.parameters():
            param.requires_grad_(True)
        module.eval()
        return Tuned(module, best, run.epoch, best_epoch, run.n_steps, run.steps_per_epoch,
                     run.history, run.diverged, improved, run.from_pretrained, run.at_cap,
                     run.key, run.plan, sum(p.numel() for _, p in run.params))

    def _observe(self, run, epoch, train_loss, evaluation):
        if self.log is not None and epoch > 0 and evaluation is not None:
            score = "" if evaluation.score is None else f", valid_score {evaluation.score:.4f}"
            self.log(f"[{key_name(run.key)}] epoch {epoch}: loss {train_loss:.4f}, "
                     f"valid_acc {evaluation.accuracy:.4f}{score}, "
                     f"valid_loss {evaluation.loss:.4f}")
        if self.on_epoch is not None:
            run.module.eval()  # as documented; the next epoch sets the training modes again
            self.on_epoch(EpochRecord(
                candidate=run.key, epoch=epoch, train_loss=train_loss,
                val_accuracy=None if evaluation is None else evaluation.accuracy,
                val_loss=None if evaluation is None else evaluation.loss,
                n_steps=run.n_steps, refit=self.data.val is None, module=run.module,
                lr=() if run.optimizer is None else tuple(
                    group["lr"] for group in run.optimizer.param_groups),
                val_score=None if evaluation is None else evaluation.score))

    def _record(self, key, tuned, budget=None):
        """Keep the record of a finished run; the progress bar hands back its unused
        budget (``budget``; None for a run trained in a worker, which reports here
        when it is done)."""
        self.runs.append((key, tuned))
        if self.progress is not None:
            if budget is None:
                self.progress.start(key_name(key), tuned.n_steps, refit=False)
                self.progress.step(tuned.n_steps)
            self.progress.finish(tuned.n_steps)

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

        On a backend that limits its workers' threads (loky, the default),
        workers times threads never exceed the cores: at most one worker per
        core (and per run), each with ``cores // workers`` torch threads,
        whatever ``OMP_NUM_THREADS`` the fitting process has. Other backends
        (dask) leave threads to their workers' settings.

        Backends that run tasks at the same time in threads of this process
        (``"threading"``, a dask cluster with ``processes=False``) do not
        train there: torch's random generator is process-wide, so concurrent
        runs would disturb each other. Their candidates train in the calling
        thread, one at a time, with a warning. Backends that run tasks in the
        calling thread (``"sequential"``, nested calls) train as they go.
        """
        n_jobs, threads = _workers(self.n_jobs, len(keys))
        if n_jobs == 1:
            self.prefetch(keys)
            return {key: self.tune(key) for key in keys}
        caller = (os.getpid(), threading.get_ident())
        tuned, deferred = {}, []
        with threads:
            runs = Parallel(n_jobs=n_jobs, return_as="generator")(
                delayed(_tune_task)(self, key, caller) for key in keys)
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


def _workers(n_jobs, n_tasks):
    """Workers for ``n_tasks`` runs under ``n_jobs``, and the context they run in.

    On a backend that can limit its workers' threads (loky), workers times
    threads stay within the cores: at most one worker per core, each with
    ``cores // workers`` threads, unless the caller chose the threads
    (``parallel_config(inner_max_num_threads=...)``). Other backends keep
    their own settings.
    """
    n = max(1, min(effective_n_jobs(n_jobs), n_tasks))
    backend, _ = get_active_backend()
    name = next((name for name, kind in BACKENDS.items() if type(backend) is kind), None)
    if n == 1 or name is None or not backend.supports_inner_max_num_threads or (
            backend.inner_max_num_threads is not None):
        return n, contextlib.nullcontext()
    n = min(n, cpu_count())
    return n, parallel_config(backend=name, inner_max_num_threads=max(1, cpu_count() // n))


def _tune_task(fine_tuning, key, caller):
    pid, thread = caller
    if os.getpid() == pid and threading.get_ident() != thread:
        return None  # a concurrent thread of the fitting process: trained by the caller
    return fine_tuning.tune(key)
