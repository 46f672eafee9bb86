"""Target data and training settings, as the training primitive takes them."""

import math
import zlib
from dataclasses import dataclass, replace

import torch

from .._inputs import check_finite_items, dataset_read_error, is_dataset
from .._forward import first_output
from .._locks import forward_pass

__all__ = ["Samples", "DatasetSamples", "TargetData", "Stopping", "Optimization",
           "AUTO_MAX_EPOCHS", "AUTO_MAX_STEPS", "AUTO_PATIENCE_EPOCHS", "AUTO_PATIENCE_STEPS",
           "AUTO_VALIDATION_RATIO",
           "SkorchClassifierLoss", "batches", "gather", "seed_for", "run_in_batches",
           "samples_of"]


class Samples:
    """Inputs and encoded labels of one side of the data (training or validation).

    ``y`` holds indices into the target's classes (not the net's outputs).
    Inputs live on the training device; labels too.
    """

    def __init__(self, X, y):
        self.X = X
        self.y = y

    def __len__(self):
        return len(self.y)

    def probe(self, n=2):
        """The first ``n`` inputs, for tracing and size checks."""
        return self.X[:n]

    def train_batches(self, batch_size, generator):
        """Shuffled ``(x, y)`` minibatches covering every sample once (one epoch)."""
        order = torch.randperm(len(self), generator=generator).to(self.y.device)
        for idx in batches(len(order), batch_size, order):
            yield self.X[idx], self.y[idx]

    def eval_batches(self, batch_size):
        """``(x, y)`` batches in order."""
        for idx in batches(len(self), batch_size):
            yield self.X[idx], self.y[idx]

    def mapped(self, function, batch_size):
        """These samples with inputs replaced by ``function(inputs)`` (no gradients)."""
        return Samples(run_in_batches(function, self.X, batch_size), self.y)

    def subset(self, idx):
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.y.device)
        return Samples(self.X[idx.to(self.X.device)], self.y[idx])

    def concat(self, other):
        if isinstance(other, DatasetSamples):
            return DatasetSamples(self.as_parts() + other.as_parts(),
                                  torch.cat([self.y, other.y]), other.to_device)
        return Samples(torch.cat([self.X, other.X]), torch.cat([self.y, other.y]))

    def as_parts(self):
        """These samples as one part of :class:`DatasetSamples`: a Dataset of ``(x, y)``
        pairs on the CPU, read with torch's default DataLoader settings."""
        return [(torch.utils.data.TensorDataset(self.X.cpu(), self.y.cpu()), {})]


class DatasetSamples:
    """Samples read from :class:`torch.utils.data.Dataset` objects of ``(x, y)`` pairs.

    Every pass reads the data again through a DataLoader (so random
    transforms draw anew each epoch), with the base net's iterator settings
    (``num_workers``, ``collate_fn``, ``pin_memory``, ...). Labels were read
    once, when the data were validated: ``y`` holds them encoded, by
    position, and the labels a batch carries are not used.

    The samples may come in parts (a refit's training and validation data,
    one a Dataset and the other arrays): each part is read with its own
    DataLoader settings, and a batch that spans parts collates each part's
    items on their own, then joins the inputs.

    Parameters
    ----------
    parts : list of (Dataset, dict)
        Each Dataset with its DataLoader settings other than batching and
        order; one part for a single Dataset.
    y : torch.Tensor
        Encoded labels, one per item of the parts in turn, on the training
        device.
    to_device : callable
        Turns a batch's inputs into a float32 tensor on the training device.
    """

    def __init__(self, parts, y, to_device):
        self.parts = list(parts)
        self.y = y
        self.to_device = to_device

    def __len__(self):
        return len(self.y)

    @property
    def dataset(self):
        datasets = [dataset for dataset, _ in self.parts]
        return datasets[0] if len(datasets) == 1 else torch.utils.data.ConcatDataset(datasets)

    def _starts(self):
        starts, start = [], 0
        for dataset, _ in self.parts:
            starts.append(start)
            start += len(dataset)
        return starts + [start]

    def _batches(self, index_batches):
        """``(inputs, labels)`` for each list of positions, in that order."""
        starts = self._starts()
        per_part = [[] for _ in self.parts]
        layout = []
        for batch in index_batches:
            pieces = []
            for p in range(len(self.parts)):
                local = [i - starts[p] for i in batch if starts[p] <= i < starts[p + 1]]
                if local:
                    per_part[p].append(local)
                    pieces.append(p)
            layout.append(pieces)
        loaders = [iter(torch.utils.data.DataLoader(dataset, batch_sampler=per_part[p],
                                                    **kwargs)) if per_part[p] else None
                   for p, (dataset, kwargs) in enumerate(self.parts)]
        cursors = [0] * len(self.parts)
        for wanted, pieces in zip(index_batches, layout):
            inputs, positions = [], []
            for p in pieces:
                local = per_part[p][cursors[p]]
                try:
                    batch = next(loaders[p])
                except Exception as exc:
                    raise dataset_read_error(self.parts[p][0], local, exc) from exc
                X = self.to_device(batch[0] if isinstance(batch, (tuple, list)) else batch)
                check_finite_items(X, self.parts[p][0], local)
                inputs.append(X)
                positions += [starts[p] + i for i in local]
                cursors[p] += 1
            X = inputs[0] if len(inputs) == 1 else torch.cat(inputs)
            if len(inputs) > 1:  # back to the order asked for: the same sums as one part
                at = {position: k for k, position in enumerate(positions)}
                X = X[torch.as_tensor([at[position] for position in wanted], device=X.device)]
            yield X, self.y[torch.as_tensor(list(wanted), device=self.y.device)]

    def train_batches(self, batch_size, generator):
        order = torch.randperm(len(self), generator=generator)
        yield from self._batches([order[idx].tolist()
                                  for idx in batches(len(self), batch_size)])

    def eval_batches(self, batch_size):
        yield from self._batches([list(range(len(self))[idx])
                                  for idx in batches(len(self), batch_size)])

    def probe(self, n=2):
        return next(self._batches([list(range(min(n, len(self))))]))[0]

    def mapped(self, function, batch_size):
        """The inputs mapped by ``function``, computed once (one draw of any random
        transform), as tensor :class:`Samples`."""
        with torch.no_grad():
            outputs = []
            for X, _ in self.eval_batches(batch_size):
                with forward_pass():
                    outputs.append(function(X))
        return Samples(torch.cat(outputs), self.y)

    def subset(self, idx):
        """The samples at positions ``idx``, part by part (their order within a part
        kept)."""
        idx = [int(i) for i in idx]
        starts = self._starts()
        parts, positions = [], []
        for p, (dataset, kwargs) in enumerate(self.parts):
            mine = [i for i in idx if starts[p] <= i < starts[p + 1]]
            if mine:
                parts.append((torch.utils.data.Subset(dataset, [i - starts[p] for i in mine]),
                              kwargs))
                positions += mine
        y = self.y[torch.as_tensor(positions, dtype=torch.long, device=self.y.device)]
        return DatasetSamples(parts, y, self.to_device)

    def as_parts(self):
        return list(self.parts)

    def concat(self, other):
        return DatasetSamples(self.as_parts() + other.as_parts(),
                              torch.cat([self.y, other.y]), self.to_device)


def samples_of(X, targets, loader_kwargs, to_device, device, idx=None):
    """The samples of X (an array, a tensor or a Dataset) with encoded ``targets``, or of
    its items at positions ``idx``: :class:`Samples`, or :class:`DatasetSamples` read with
    ``loader_kwargs``. ``to_device`` makes float32 tensors on ``device``, the training
    device."""
    if idx is not None:
        X = torch.utils.data.Subset(X, idx.tolist()) if is_dataset(X) else X[idx]
        targets = targets[idx]
    encoded = torch.as_tensor(targets, dtype=torch.long, device=device)
    if is_dataset(X):
        return DatasetSamples([(X, loader_kwargs)], encoded, to_device)
    return Samples(to_device(X), encoded)


@dataclass
class TargetData:
    """The target task: training samples, validation samples (or None) and classes.

    ``classes`` are the output columns of the net that the target uses; labels
    in :class:`Samples` index them.
    """

    train: Samples
    val: object  # Samples or None (a refit trains without validation)
    classes: torch.Tensor

    @property
    def device(self):
        return self.classes.device

    def probe(self, n=2):
        return (self.val if self.val is not None else self.train).probe(n)


#: ``patience="auto"``: wait this many epochs, and at least this many optimizer steps.
AUTO_PATIENCE_EPOCHS = 5
AUTO_PATIENCE_STEPS = 40
#: ``max_epochs="auto"``: at least this many epochs, and at least this many optimizer
#: steps, so that a few images per class (one step an epoch) still train long enough.
AUTO_MAX_EPOCHS = 100
AUTO_MAX_STEPS = 400
#: ``validate_every="auto"``: validate once the training samples seen since the last
#: validation are at least this many times the validation samples (a validation pass
#: then costs about a third of the training between two passes, or less), and at least
#: twice in every ``patience`` window.
AUTO_VALIDATION_RATIO = 1


@dataclass(frozen=True)
class Stopping:
    """How long one training run lasts, and when it validates.

    Parameters
    ----------
    max_epochs : int
        Full passes over the training data, at most.
    patience : int or None, default=None
        Epochs without progress on validation (a better epoch, or a new
        minimum of the validation loss) after which the run stops; None:
        never. Checked when the run validates.
    max_steps : int or None, default=None
        Optimizer steps, at most (a refit's length).
    validate_every : int, default=1
        Validate after every this many epochs, and after the last one
        (the epoch a run keeps is one it validated).

    Examples
    --------
    >>> from flexsk.strategies import Stopping
    >>> Stopping(max_epochs=100, patience=5).replace(max_epochs=1, patience=None)
    Stopping(max_epochs=1, patience=None, max_steps=None, validate_every=1)
    >>> Stopping.auto(n_train=20, n_val=200, batch_size=32)
    Stopping(max_epochs=400, patience=40, max_steps=None, validate_every=10)
    """

    max_epochs: int
    patience: object = None  # int or None
    max_steps: object = None  # int or None
    validate_every: int = 1

    def replace(self, **changes):
        return replace(self, **changes)

    def validates(self, epoch):
        """Whether a run validates after ``epoch`` (its last epoch aside, always validated)."""
        return epoch % self.validate_every == 0

    @classmethod
    def auto(cls, *, n_train, n_val, batch_size, max_epochs="auto", patience="auto",
             validate_every="auto"):
        """The stopping of a run on ``n_train`` samples validated on ``n_val``, with
        FlexTuner's ``max_epochs``, ``patience`` and ``validate_every`` ("auto" resolved).

        ``max_epochs="auto"``: AUTO_MAX_EPOCHS epochs, and at least AUTO_MAX_STEPS
        optimizer steps. ``patience="auto"``: AUTO_PATIENCE_EPOCHS epochs, and at least
        AUTO_PATIENCE_STEPS steps. ``validate_every="auto"``: every
        ``ceil(AUTO_VALIDATION_RATIO * n_val / n_train)`` epochs, at most half the
        patience (a tenth of ``max_epochs`` without patience), at least 1.
        """
        steps_per_epoch = max(1, math.ceil(n_train / batch_size))
        if max_epochs == "auto":
            max_epochs = max(AUTO_MAX_EPOCHS, math.ceil(AUTO_MAX_STEPS / steps_per_epoch))
        if patience == "auto":
            patience = max(AUTO_PATIENCE_EPOCHS, math.ceil(AUTO_PATIENCE_STEPS / steps_per_epoch))
        if validate_every == "auto":
            window = patience // 2 if patience is not None else max_epochs // 10
            validate_every = max(1, min(math.ceil(AUTO_VALIDATION_RATIO * n_val
                                                  / max(n_train, 1)), window))
        return cls(max_epochs, patience, validate_every=validate_every)


@dataclass
class Optimization:
    """How to train: taken from the base net, overridden by FlexTuner."""

    optimizer: type
    optimizer_kwargs: dict
    lr: float
    batch_size: int
    stopping: Stopping
    get_loss: object  # callable(gathered outputs, y) -> loss
    probabilities: bool  # whether the net outputs probabilities (NLLLoss)
    eval_batch_size: int = 1024
    autocast_dtype: object = None  # e.g. torch.bfloat16: mixed precision forward passes
    callbacks: tuple = ()  # the base net's LRScheduler and GradientNormClipping callbacks


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


def gather(outputs, classes, probabilities):
    """Restrict net outputs to the target's classes (renormalizing probabilities).

    A module that returns a tuple contributes its first element, as in skorch.
    """
    gathered = first_output(outputs).index_select(1, classes)
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


def run_in_batches(function, X, batch_size):
    """``function`` over X in batches, without gradients; the results concatenated."""
    with torch.no_grad():
        outputs = []
        for idx in batches(len(X), batch_size):
            with forward_pass():
                outputs.append(function(X[idx]))
        return torch.cat(outputs)


def seed_for(base_seed, key):
    """The seed of the run of ``key`` in a fit whose ``random_state`` draws ``base_seed``:
    one per candidate, independent of the order candidates are trained in.

    Parameters
    ----------
    base_seed : int
        The seed that the fit's ``random_state`` draws.
    key : hashable
        What names the run: a unit's name, a tuple of them, or a run's name.

    Returns
    -------
    int
        A seed in ``[0, 2**31)``, the same for the same ``base_seed`` and ``key``.

    Examples
    --------
    >>> from flexsk.strategies import seed_for
    >>> seed_for(0, "conv1") == seed_for(0, "conv1") != seed_for(0, "conv2")
    True
    """
    return (base_seed + zlib.crc32(repr(key).encode())) % (2 ** 31)
