"""The activation cache: frozen prefixes computed once, reused every epoch.

When a run tunes only units from ``l`` onward, the units before ``l`` are
frozen and in eval mode, so their outputs never change: they are computed
once over the training and validation data, and training runs only the rest
of the network (the suffix). Proxy nets share the pretrained prefix likewise.

Training data read from a Dataset may draw random transforms at every read
(augmentation), so with ``enabled="auto"`` its passes are not cached: only
the validation side is. ``enabled=True`` caches it too, freezing one draw.
"""

import contextlib

import torch

from .. import _surgery
from ._data import DatasetSamples, Samples
from .._locks import forward_pass

__all__ = ["ActivationCache"]


class ActivationCache:
    """Cuts of the pretrained net and the cached inputs of units.

    Parameters
    ----------
    pretrained : torch.nn.Module
        The pretrained network. Never modified.
    units : list of Unit
    data : TargetData
    enabled : "auto" or bool
        ``"auto"`` caches when the cached activations fit in ``budget``
        bytes; True always caches; False never does.
    budget : int
        Bytes, for ``enabled="auto"``.
    eval_batch_size : int
        Batch size of the prefix passes.
    autocast : callable
        Returns the autocast context of forward passes.
    """

    def __init__(self, pretrained, units, data, *, enabled="auto", budget=2 ** 30,
                 eval_batch_size=1024, autocast=contextlib.nullcontext):
        self.pretrained = pretrained
        self.units = units
        self.by_name = {unit.name: unit for unit in units}
        self.data = data
        self.enabled = enabled
        self.budget = budget
        self.eval_batch_size = eval_batch_size
        self.autocast = autocast
        self._cuts = None  # built on first use: ft-all and ft-ss never cut
        self._inputs = {}  # unit name -> (train Samples or None, val Samples or None)
        self.caches_training = enabled is True or not isinstance(data.train, DatasetSamples)

    def __getstate__(self):
        # Sent to joblib workers without caches; cuts are rebuilt there.
        return {**self.__dict__, "_cuts": None, "_inputs": {}}

    @property
    def cuts(self):
        """Where the pretrained net can be cut (:class:`~flexsk._surgery.Cuts`), or None."""
        if self._cuts is None and self.enabled:
            self._cuts = _surgery.Cuts(self.pretrained.eval(), self.units, self.data.probe())
        return self._cuts

    def cuttable(self, unit_names):
        """The names among ``unit_names`` before which the net can be cut."""
        cuts = self.cuts
        return [] if cuts is None else [name for name in unit_names if name in cuts]

    def prefix(self, unit_name):
        return self.cuts.prefix(self.pretrained, unit_name).eval()

    def suffix(self, module, unit_name):
        """The unit and what follows it in ``module``, taking the unit's input."""
        return self.cuts.suffix(module, unit_name)

    # -- budget -------------------------------------------------------------------------

    def fits(self, unit_names, n_samples):
        """Whether the inputs of ``unit_names`` on ``n_samples`` samples fit the budget."""
        if self.enabled is True:
            return True
        sample = self.unit_inputs(unit_names, self.data.probe(1))
        per_sample = sum(t.element_size() * t.numel() for t in sample.values())
        return per_sample * n_samples <= self.budget

    # -- the cached inputs ------------------------------------------------------------------

    def _sides(self):
        """The samples whose unit inputs are cached: training (unless it is an augmenting
        Dataset under "auto") and validation."""
        return [self.data.train if self.caches_training else None, self.data.val]

    def _n_cached(self):
        return sum(len(side) for side in self._sides() if side is not None)

    def cut_for(self, selection):
        """The unit to cut before for ``selection``, or None (no cut applies, or no budget).

        Units before the earliest tuned unit are frozen and in eval mode, so
        their outputs are the same every epoch.
        """
        if selection.units is None or selection.extra is not None or not self.enabled:
            return None
        first = min((unit for unit in selection.units if unit in self.units),
                    key=self.units.index).name  # a new head that is no unit comes last
        if not self.cuttable([first]) or any(
                selection.trains(name) for name in self.cuts.prefix_parameters(first)):
            return None  # no cut there, or the prefix uses a parameter that trains
        if not self.fits([first], self._n_cached()):
            return None
        return first

    def inputs(self, unit_name):
        """The pretrained prefix's outputs (the unit's inputs) on the training and
        validation samples, as a pair of :class:`Samples`; a side is None when it is
        absent or not cached (see the module's docstring)."""
        if unit_name not in self._inputs:
            prefix = self.prefix(unit_name)
            with self.autocast():
                self._inputs = {unit_name: tuple(
                    None if samples is None else samples.mapped(prefix, self.eval_batch_size)
                    for samples in self._sides())}
        return self._inputs[unit_name]

    def prefetch(self, unit_names):
        """Cache several units' inputs in one pretrained pass, budget allowing.

        Flex cuts before every unit: one pass that records every unit's input
        replaces one prefix pass per unit.
        """
        names = list(dict.fromkeys(self.cuttable(unit_names)))
        if len(names) < 2 or not self.fits(names, self._n_cached()):
            return
        sides = self._sides()
        captured = [None if s is None else self._unit_inputs_of(names, s) for s in sides]
        self._inputs = {
            name: tuple(None if c is None else _with_inputs(side, c[name])
                        for side, c in zip(sides, captured))
            for name in names}

    def val_inputs(self, unit_names):
        """Inputs of the cuttable ``unit_names`` on validation data, from one pretrained
        pass; {} when nothing can be cut or they do not fit the budget."""
        names = self.cuttable(unit_names)
        if not names or not self.fits(names, len(self.data.val)):
            return {}
        return {name: _with_inputs(self.data.val, inputs)
                for name, inputs in self._unit_inputs_of(names, self.data.val).items()}

    def unit_inputs(self, unit_names, X):
        """Inputs of several units' first modules in one eval-mode pass over X."""
        units = [self.by_name[name] for name in unit_names]
        with torch.no_grad(), self.autocast(), forward_pass():
            return _surgery.unit_inputs(self.pretrained, units, X)

    def _unit_inputs_of(self, unit_names, samples):
        chunks = [self.unit_inputs(unit_names, X)
                  for X, _ in samples.eval_batches(self.eval_batch_size)]
        return {name: torch.cat([chunk[name] for chunk in chunks]) for name in unit_names}


def _with_inputs(samples, X):
    return Samples(X, samples.y)
