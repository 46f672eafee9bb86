"""Selection strategies: the built-in ones, and what you need to write your own.

A strategy is a *schedule*: a function that receives a
:class:`TrainingContext` and returns an :class:`Outcome`. The context trains
and scores (:meth:`~TrainingContext.tune`, :meth:`~TrainingContext.evaluate`,
proxies, gradient norms); the schedule only decides what to train, in what
order, and which model to keep. Pass a schedule, or a :class:`Strategy`
record that wraps one, as ``FlexTuner(strategy=...)``: it then runs under
``cv``, ``n_jobs``, ``refit``, ``max_units`` and the progress bar like the
built-in strategies, which are written the same way (:data:`BUILTIN`).

Read more in :ref:`custom_strategies`.

Examples
--------
>>> from flexsk.strategies import Outcome, best_of
>>> def last_two(ctx):
...     '''Flex-tuning over the last two units only.'''
...     keys = [unit.name for unit in ctx.units[-2:]]
...     tuned = ctx.tune_many(keys)
...     return Outcome(best_of({k: t.evaluation for k, t in tuned.items()}), tuned)
"""

from types import MappingProxyType
from typing import Protocol

from ._strategies import STRATEGIES, Option, Outcome, Strategy, best_of
from ._training import Evaluation, Patience, Stopping, Tuned, rank, seed_for

__all__ = ["BUILTIN", "Evaluation", "Option", "Outcome", "Patience", "Stopping", "Strategy",
           "TrainingContext", "Tuned", "best_of", "rank", "seed_for"]

#: The built-in strategies by name: ``FlexTuner(strategy=name)``.
BUILTIN = MappingProxyType(STRATEGIES)


class TrainingContext(Protocol):
    """What a strategy's schedule receives: the training and scoring primitives of a fit.

    One context per fit; with ``cv`` it is cross-validated, and every method
    below then runs on each fold and returns the mean over the folds (a
    trained module is then one per fold, and may be passed back as it is).
    A schedule written against this interface needs nothing else to work
    under ``cv``, ``n_jobs`` (:meth:`tune_many` trains in parallel),
    ``refit`` and ``max_units``.

    Attributes
    ----------
    units : list
        The units in forward order; each has a ``name``.
    pretrained : torch.nn.Module
        The pretrained network (never modify it). With FlexTuner's
        ``head="new"`` its output layer is the new, untrained head.
    head : Unit or None
        The new output layer (``head="new"``), or None. It trains in every
        run besides the run's key, and proxy nets take it from their donor;
        a schedule needs to do nothing about it.
    stopping : Stopping
        How long a run lasts by default (FlexTuner's ``max_epochs``,
        ``patience`` and ``validate_every``);
        ``stopping.replace(max_epochs=1, patience=None)`` gives another.
    runs : list of (key, Tuned)
        Every training run so far, in the order they finished (with ``cv``,
        one per candidate, its folds combined).
    pretrained_evaluation : Evaluation
        The pretrained net's, on validation data.
    data : object
        The target data: ``data.classes``, the net's outputs the target uses.
    optimization : object
        How runs train: ``optimization.lr``, ``optimization.batch_size``, ...
    config : dict
        flexsk's settings for this fit (:func:`flexsk.get_config`).

    The checks after a strategy (:class:`~flexsk.SelectionWarning`, the
    refit) read ``runs``, ``pretrained_evaluation``, ``data``,
    ``optimization``, ``config`` and :meth:`on_all_data`; a schedule rarely
    needs them.
    """

    units: list
    pretrained: object
    head: object
    stopping: Stopping
    runs: list
    pretrained_evaluation: Evaluation
    data: object
    optimization: object
    config: dict

    def tune(self, key, *, start=None, stopping=None, keep_best=True, lr_scales=None,
             name=None) -> Tuned:
        """Fine-tune a unit (its name), a tuple of unit names, ``"all"`` or ``"ss"``
        (scale-and-shift), with the new head if there is one, from ``start`` (the
        pretrained weights by default; a :class:`Tuned` continues that run, and a
        refit trains it first), until validation stops making progress; keep the
        best epoch (or, with ``keep_best=False``, the last). ``lr_scales``
        multiplies the learning rate per parameter name (a dict), or is asked
        before every epoch (``lr_scales(ctx, module, epoch) -> dict``, a fresh
        optimizer each time). ``name`` names the run (``key`` by default): its
        seed derives from it, and a refit trains it again the same way."""

    def tune_many(self, keys) -> dict:
        """:meth:`tune` each key from the pretrained weights, in parallel with ``n_jobs``:
        key -> :class:`Tuned`."""

    def evaluate(self, module) -> Evaluation:
        """Validation accuracy, loss and score (``scoring``) of ``module``."""

    def proxy_evaluations(self, donor) -> dict:
        """For each unit, the pretrained net with that unit's weights (and the new
        head, if there is one) taken from ``donor``, scored on validation data
        (Algorithm 2's proxies): unit name -> :class:`Evaluation`."""

    def relative_gradient_norms(self, n_batches=4) -> dict:
        """For each unit, the mean over its parameter tensors of ``||grad|| / ||w||`` at
        the pretrained weights, on ``n_batches`` minibatches: unit name -> float."""

    def prefetch(self, keys):
        """Compute the frozen prefixes of several runs' inputs in one pass (an
        optimization; the results do not depend on it)."""

    def on_all_data(self) -> "TrainingContext":
        """The context of the refit: every labelled sample, no validation data."""
