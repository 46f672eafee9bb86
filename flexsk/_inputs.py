"""What FlexTuner accepts as data: arrays, tensors and Datasets, and labels.

Arrays and tensors take the fast path: validated once, then sliced in
batches. A :class:`torch.utils.data.Dataset` is read through a DataLoader
built with the base net's iterator settings, again at every pass, so that
random transforms draw anew.

Labels index the pretrained net's outputs, unless the base net declares
``classes`` (skorch's ``NeuralNetClassifier(module, classes=[...])``): then
output ``i`` means label ``classes[i]``, and labels are those names.
"""

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["Labels", "is_dataset", "loader_kwargs", "read_dataset", "dataset_inputs",
           "dataset_labels", "concat_labels", "check_tensor", "as_numpy", "stratified_split",
           "LOADER_SETTINGS_WE_SET", "dataset_read_error", "check_finite_items", "integral"]

#: DataLoader arguments that FlexTuner sets itself: batching and order.
LOADER_SETTINGS_WE_SET = ("batch_size", "shuffle", "sampler", "batch_sampler", "drop_last",
                          "generator", "dataset")

_INTEGER_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def is_dataset(X):
    """Whether ``X`` is a torch Dataset (and not a tensor or an array)."""
    return isinstance(X, Dataset) and not torch.is_tensor(X)


def loader_kwargs(net, which):
    """The base net's ``iterator_train__*`` or ``iterator_valid__*`` settings that a
    DataLoader takes besides batching and order (``num_workers``, ``collate_fn``,
    ``pin_memory``, ...)."""
    settings = dict(net.get_params_for(which))
    return {k: v for k, v in settings.items() if k not in LOADER_SETTINGS_WE_SET}


def _split_item(batch):
    """``(inputs, labels or None)`` of a collated batch of ``x`` or ``(x, y)`` items."""
    if isinstance(batch, (tuple, list)):
        if len(batch) == 2:
            return batch[0], batch[1]
        if len(batch) == 1:
            return batch[0], None
        raise ValueError(f"A Dataset must yield x or (x, y) pairs; its items have "
                         f"{len(batch)} elements.")
    return batch, None


def _root_index(dataset, i):
    """The Dataset beneath any Subsets, and item ``i``'s index in it."""
    while isinstance(dataset, torch.utils.data.Subset):
        dataset, i = dataset.dataset, int(dataset.indices[i])
    return dataset, i


def _item_shape(item):
    x = item[0] if isinstance(item, (tuple, list)) else item
    return tuple(getattr(x, "shape", ()))


def dataset_read_error(dataset, local, exc):
    """A ValueError naming the Dataset item that a batch could not be read or
    collated from: the first item that raises, else the first whose input's shape
    differs from the batch's first."""
    shapes = {}
    for i in local:
        root, index = _root_index(dataset, i)
        try:
            shapes[index] = _item_shape(dataset[i])
        except Exception as item_exc:
            return ValueError(f"Reading item {index} of the {type(root).__name__} raised "
                              f"{type(item_exc).__name__}: {item_exc}")
    first = next(iter(shapes.values()), None)
    odd = next((index for index, shape in shapes.items() if shape != first), None)
    if odd is not None:
        return ValueError(
            f"Item {odd} of the {type(_root_index(dataset, 0)[0]).__name__} has an input of "
            f"shape {shapes[odd]}, unlike the others of its batch "
            f"({first}, item {next(iter(shapes))}): every item must have the same shape.")
    return ValueError(f"Reading a batch of items {sorted(shapes)} of the Dataset failed: "
                      f"{type(exc).__name__}: {exc}")


def check_finite_items(X, dataset, local):
    """Refuse a batch holding NaN or infinity, naming the Dataset item."""
    finite = torch.isfinite(X.reshape(len(X), -1)).all(dim=1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0])
        root, index = _root_index(dataset, local[row])
        raise ValueError(f"Item {index} of the {type(root).__name__} holds NaN or infinity; "
                         f"inputs must be finite.")


def read_dataset(dataset, kwargs, batch_size, name):
    """Read a Dataset once: its first inputs, and every label (None when it yields x only).

    Returns
    -------
    first : torch.Tensor
        The first batch of inputs, for shape checks and the probe pass.
    labels : ndarray or None
    """
    try:
        n_items = len(dataset)
    except TypeError:
        raise ValueError(f"{name} is a Dataset without a length; FlexTuner needs a map-style "
                         f"Dataset (with __len__ and __getitem__).") from None
    if n_items == 0:
        raise ValueError(f"{name} is an empty Dataset.")
    loader = iter(DataLoader(dataset, batch_size=batch_size, shuffle=False, **kwargs))
    first, labels = None, []
    for start in range(0, n_items, batch_size):
        try:
            batch = next(loader)
        except Exception as exc:
            raise dataset_read_error(dataset, range(start, min(start + batch_size, n_items)),
                                     exc) from exc
        inputs, y = _split_item(batch)
        if torch.is_tensor(inputs) and inputs.is_floating_point():
            check_finite_items(inputs, dataset, range(start, start + len(inputs)))
        if first is None:
            first = _check_inputs(inputs, name)
        if y is None:
            labels = None
            break
        labels.append(y)
    if labels is not None:
        labels = concat_labels(labels)
        if len(labels) != n_items:
            raise ValueError(f"{name} yielded {len(labels)} labels for {n_items} items.")
    return first, labels


def dataset_inputs(batch, name):
    """The inputs of a collated batch of ``x`` or ``(x, y)`` items, checked."""
    return _check_inputs(_split_item(batch)[0], name)


def dataset_labels(batch):
    return _split_item(batch)[1]


def concat_labels(batches):
    """The labels of collated batches (tensors, arrays or lists), as one array."""
    return np.concatenate([np.atleast_1d(np.asarray(as_numpy(y))) for y in batches])


def _check_inputs(inputs, name):
    if not torch.is_tensor(inputs):
        try:
            inputs = torch.as_tensor(np.asarray(inputs))
        except (TypeError, ValueError):
            raise ValueError(f"{name} yields inputs of type {type(inputs).__name__}; "
                             f"FlexTuner needs tensors or arrays.") from None
    return check_tensor(inputs, name)


def check_tensor(X, name):
    """Validate a torch tensor input where it lives: float32, at least 2D, finite."""
    if X.is_complex() or not (X.is_floating_point() or X.dtype in _INTEGER_DTYPES):
        raise ValueError(f"{name} must hold real numbers, got a tensor of dtype {X.dtype}.")
    if X.dim() < 2:
        raise ValueError(f"Expected {name} with at least 2 dimensions (n_samples, ...), got "
                         f"a {X.dim()}D tensor.")
    if len(X) == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape={tuple(X.shape)}) while a "
                         f"minimum of 1 is required.")
    X = X.detach().to(torch.float32)
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"Input {name} contains NaN or infinity.")
    return X.contiguous()


def as_numpy(X):
    if torch.is_tensor(X):
        return X.detach().cpu().numpy()
    return X


class Labels:
    """How labels map to the pretrained net's outputs.

    Parameters
    ----------
    declared : array-like or None
        The base net's ``classes``: the label of each output. None: labels
        are output indices.
    n_outputs : int
        The net's number of outputs.
    of_y : bool, default=False
        ``declared`` are the classes of ``y`` (a new head), not base_net's
        ``classes``: an unknown label is then one that ``y`` lacks.
    """

    def __init__(self, declared, n_outputs, of_y=False):
        self.n_outputs = n_outputs
        self.of_y = of_y
        self.declared = None if declared is None else np.asarray(declared)
        if self.declared is not None and self.declared.dtype.kind in "iu" and np.array_equal(
                self.declared, np.arange(n_outputs)):
            self.declared = None  # the output indices themselves
        if self.declared is not None:
            if self.declared.ndim != 1 or len(self.declared) != n_outputs:
                raise ValueError(
                    f"base_net declares {len(np.atleast_1d(self.declared))} classes but its "
                    f"module has {n_outputs} outputs: classes must name every output, "
                    f"in order.")
            if len(np.unique(self.declared)) != len(self.declared):
                raise ValueError("base_net's classes hold duplicates: each output needs its "
                                 "own label.")
            self._index = {self._key(label): i for i, label in enumerate(self.declared)}

    @staticmethod
    def _key(label):
        return label.item() if isinstance(label, np.generic) else label

    def outputs_of(self, y, name):
        """The output index of each label of ``y``; a clear error for labels that do not
        name an output."""
        y = np.asarray(as_numpy(y))
        if self.declared is None:
            outputs = _integer_labels(y, name)
            bad = np.unique(outputs[(outputs < 0) | (outputs >= self.n_outputs)])
            if bad.size:
                raise ValueError(
                    f"{name} holds labels {bad.tolist()} outside [0, {self.n_outputs}): "
                    f"labels index the pretrained net's {self.n_outputs} outputs (or declare "
                    f"their names with NeuralNetClassifier(..., classes=[...])). For classes "
                    f"the net never had, pass head='new' (a new output layer).")
            return outputs
        strings = self.declared.dtype.kind in "OUS" and all(
            isinstance(c, str) for c in self.declared.tolist())
        if strings and y.dtype.kind in "biuf":
            raise ValueError(
                f"{name} holds numbers, but base_net declares string classes "
                f"{self._preview()}: pass the class names as labels (or head='new' for "
                f"classes the net never had).")
        keys = [self._key(label) for label in y.tolist()] if y.ndim else []
        unknown = sorted({k for k in keys if k not in self._index}, key=str)
        shown = f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}"
        if unknown and self.of_y:
            raise ValueError(f"{name} holds labels {shown} that are not in y; the classes "
                             f"seen in y are {self._preview()}.")
        if unknown:
            raise ValueError(
                f"{name} holds labels {shown} that base_net's classes do not declare; "
                f"declared: {self._preview()}. For classes the net never had, pass "
                f"head='new' (a new output layer).")
        return np.asarray([self._index[k] for k in keys], dtype=np.int64)

    def labels_of(self, outputs):
        """The labels of output indices."""
        outputs = np.asarray(outputs)
        return outputs if self.declared is None else self.declared[outputs]

    def _preview(self):
        shown = self.declared[:10].tolist()
        return f"{shown}{' ...' if len(self.declared) > 10 else ''}"


def _integer_labels(y, name):
    if y.dtype.kind in "OUS":
        raise ValueError(
            f"{name} must hold integer labels that index the pretrained net's outputs, "
            f"got labels of type {y.dtype}. Map your labels to the net's class indices, "
            f"declare the label of each output with NeuralNetClassifier(..., classes=[...]), "
            f"or pass head='new' for a new output layer.")
    if not integral(y):
        raise ValueError(f"{name} must hold integer labels, got non-integer values.")
    return y.astype(np.int64)


def integral(y):
    """Whether the numeric array ``y`` holds integers only (any integer or float dtype)."""
    return y.dtype.kind != "f" or bool(np.all(np.isfinite(y)) and np.all(y == np.round(y)))


def stratified_split(y, fraction, rng, names=None):
    """Per-class split: every class gets at least one training and one validation sample.

    ``names(label)`` gives the user's label of an encoded one, for messages.
    """
    train, val = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        if len(idx) < 2:
            shown = label if names is None else names(label)
            raise ValueError(
                f"FlexTuner holds out validation_fraction={fraction} of each class for "
                f"validation, which needs at least 2 samples per class; class {shown!r} has "
                f"{len(idx)} sample. Pass more data, or X_val and y_val.")
        n_val = min(max(1, int(round(fraction * len(idx)))), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
