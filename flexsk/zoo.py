"""Small source networks with the paper's unit structure, pretrained offline.

Flex-tuning (Royer & Lampert, WACV 2020) fine-tunes exactly one *unit* of a
pretrained network. This module provides the pretrained networks: two small
convolutional architectures mirroring the medium-sized experiments of the
paper (Section 5.1), pretrained on the embedded clean digits of
:func:`flexsk.datasets.load_digits_source` (nothing is downloaded).

Architectures
-------------
Both networks are :class:`torch.nn.Sequential` chains whose top-level children
are named. Every child that owns parameters is exactly one unit; the only
other top-level child, ``flatten``, owns no parameters. Pooling lives inside
the conv units and owns no parameters either.

``"conv4"`` (the paper's MNIST net, 4 units, no BatchNorm)::

    conv1    Conv2d(C, 16, 3, padding=1), ReLU, MaxPool2d(2)
    conv2    Conv2d(16, 32, 3, padding=1), ReLU, MaxPool2d(2)
    flatten  Flatten()                          -> 32 * (S/4)**2 features
    fc1      Linear(32 * (S/4)**2, 64), ReLU
    fc2      Linear(64, n_classes)              (logits)

``"conv7"`` (the paper's CIFAR net, 7 units, BatchNorm in the conv units)::

    conv1    Conv2d(C, 16, 3, padding=1), BatchNorm2d, ReLU, MaxPool2d(2)
    conv2    Conv2d(16, 32, 3, padding=1), BatchNorm2d, ReLU
    conv3    Conv2d(32, 32, 3, padding=1), BatchNorm2d, ReLU, MaxPool2d(2)
    conv4    Conv2d(32, 64, 3, padding=1), BatchNorm2d, ReLU
    conv5    Conv2d(64, 64, 3, padding=1), BatchNorm2d, ReLU, MaxPool2d(2)
    flatten  Flatten()                          -> 64 * (S/8)**2 features
    fc1      Linear(64 * (S/8)**2, 64), ReLU
    fc2      Linear(64, n_classes)              (logits)

``C`` is the number of input channels and ``S`` the image side, which must be
a multiple of 8.

Pretraining and fine-tuning
---------------------------
:func:`load_source_net` pretrains a network on the source ``"train"`` split
(60 digits per class) with Adam at learning rate ``3e-3``, batch size 64, for
a fixed number of epochs and a fixed seed (the global torch RNG is left
untouched). As in the paper, the returned estimator is configured for
*fine-tuning* with Adam at the lower learning rate ``1e-3``.

The returned :class:`skorch.NeuralNetClassifier` loads the pretrained weights
whenever its module is (re)initialized, so ``net.fit``, and ``fit`` on a
:func:`sklearn.base.clone` of it, always start from the pretrained weights.

Cache
-----
Pretrained weights are stored as a ``state_dict`` in
``<cache_dir>/<arch>-c<n_channels>-s<image_size>-v<ZOO_VERSION>-<recipe>.pt``,
where ``<recipe>`` is a short hash of the pretraining recipe and data budget, written
atomically (temporary file and :func:`os.replace`), and read back with
``torch.load(..., weights_only=True)``. The cache directory is, in order of
precedence, the ``cache_dir`` argument, the ``FLEXSK_CACHE_DIR`` environment
variable, ``$XDG_CACHE_HOME/flexsk`` and ``~/.cache/flexsk``
(see :func:`get_cache_dir`).

Each file carries a SHA-256 digest of its tensors (an attribute of the saved
``OrderedDict``, invisible to ``load_state_dict``). Loading checks the digest,
that every weight is finite and that the keys and shapes fit the
architecture; a file that fails (truncated, damaged, or not written by this
module, e.g. zeros saved under the right name) is retrained and rewritten,
with a warning. Weights that cannot be written (a read-only cache) are kept
in memory for the rest of the process, so that re-initializing a net does not
retrain them again.
"""

import hashlib
import os
import time
import warnings
from collections import OrderedDict
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, Options, StrOptions, validate_params
from torch import nn

from ._checks import IMAGE_SIZE, check_image_size, check_not_bool
from ._files import atomic_write
from .datasets import PARTITION_SEED, SPLIT_SIZES, load_digits_source

__all__ = ["ARCHS", "make_net", "load_source_net", "get_cache_dir"]

#: Names of the available architectures.
ARCHS = ("conv4", "conv7")

#: Version of the architectures and of the cache files; part of the cache file
#: names, with a hash of the pretraining recipe, so that a change of either
#: never loads stale weights. 2: the files carry a SHA-256 digest.
ZOO_VERSION = 2

# Pretraining recipe (hashed into the cache file names by _recipe_tag).
_PRETRAIN_SEED = 0
_PRETRAIN_LR = 3e-3
_PRETRAIN_BATCH_SIZE = 64
_PRETRAIN_EPOCHS = {"conv4": 30, "conv7": 20}

# Fine-tuning configuration of the returned estimator (the paper's 1e-3).
_FINETUNE_LR = 1e-3
_FINETUNE_BATCH_SIZE = 32
_FINETUNE_MAX_EPOCHS = 20

_N_SOURCE_CLASSES = 10

# State dicts whose cache file could not be written (or rewritten, for a
# damaged file in a read-only cache), by cache path (which holds the recipe),
# so that re-initializing a net in this process does not retrain it.
_UNSAVED = {}
# The attribute of the saved OrderedDict that holds its digest.
_DIGEST = "flexsk_sha256"


# --------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------

#: validate_params constraints of the architecture arguments.
_NET_CONSTRAINTS = {
    "arch": [StrOptions(set(ARCHS))],
    "n_channels": [Interval(Integral, 1, None, closed="left")],
    "image_size": [IMAGE_SIZE],
    "n_classes": [Interval(Integral, 2, None, closed="left")],
}


def _check_net_args(caller, n_channels, image_size, n_classes=2):
    """What validate_params cannot say: no bools, and image sides divisible by 8."""
    check_not_bool(caller, n_channels=n_channels, n_classes=n_classes)
    return int(n_channels), check_image_size(caller, image_size, multiple_of=8), int(n_classes)


def _conv_unit(in_channels, out_channels, *, batch_norm, pool):
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU())
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def _layers(arch, n_channels, image_size, n_classes):
    """Named top-level children of ``arch``, in forward order."""
    if arch == "conv4":
        spec = [(16, True), (32, True)]
        batch_norm = False
    else:  # conv7
        spec = [(16, True), (32, False), (32, True), (64, False), (64, True)]
        batch_norm = True
    layers = OrderedDict()
    in_channels, side = n_channels, image_size
    for i, (out_channels, pool) in enumerate(spec, start=1):
        layers[f"conv{i}"] = _conv_unit(in_channels, out_channels,
                                        batch_norm=batch_norm, pool=pool)
        in_channels = out_channels
        side //= 2 if pool else 1
    layers["flatten"] = nn.Flatten()
    layers["fc1"] = nn.Sequential(nn.Linear(in_channels * side * side, 64), nn.ReLU())
    layers["fc2"] = nn.Linear(64, n_classes)
    return layers


@validate_params(_NET_CONSTRAINTS, prefer_skip_nested_validation=True)
def make_net(arch, *, n_channels=1, image_size=16, n_classes=10):
    """Build a freshly (randomly) initialised zoo network.

    Parameters
    ----------
    arch : {"conv4", "conv7"}
        ``"conv4"``: 4 units ``conv1, conv2, fc1, fc2`` (the paper's MNIST
        net), no BatchNorm. ``"conv7"``: 7 units ``conv1, ..., conv5, fc1,
        fc2`` (the paper's CIFAR net), with BatchNorm in the conv units.
    n_channels : int, default=1
        Number of input channels.
    image_size : int, default=16
        Side of the square input images; a multiple of 8, at least 8.
    n_classes : int, default=10
        Number of outputs (logits) of the classifier unit ``fc2``.

    Returns
    -------
    net : torch.nn.Sequential
        A chain of named top-level children. Each child owning parameters is
        one unit; ``flatten`` owns none. The output is the logits, of shape
        ``(N, n_classes)``, for inputs of shape
        ``(N, n_channels, image_size, image_size)``.

    Raises
    ------
    ValueError
        If an argument is invalid.

    Examples
    --------
    >>> import torch
    >>> from flexsk.zoo import make_net
    >>> net = make_net("conv4")
    >>> [name for name, child in net.named_children()]
    ['conv1', 'conv2', 'flatten', 'fc1', 'fc2']
    >>> net(torch.zeros(2, 1, 16, 16)).shape
    torch.Size([2, 10])
    """
    n_channels, image_size, n_classes = _check_net_args("make_net", n_channels, image_size,
                                                        n_classes)
    return nn.Sequential(_layers(arch, n_channels, image_size, n_classes))


@validate_params(
    {**_NET_CONSTRAINTS, "cache_dir": [str, os.PathLike, None], "digits": [list, tuple, None]},
    prefer_skip_nested_validation=True,
)
def _source_module(arch="conv4", n_channels=1, image_size=16, cache_dir=None, digits=None):
    """A zoo network (a plain ``nn.Sequential``) holding its pretrained weights.

    The ``module`` factory of the estimator returned by :func:`load_source_net`,
    so that every (re)initialization of the estimator starts from the
    pretrained weights. ``cache_dir`` should be an absolute path.
    """
    n_channels, image_size, _ = _check_net_args("_source_module", n_channels, image_size)
    # The random initialization is overwritten below: keep it off the
    # global RNG, so that loading a source net leaves the RNG untouched.
    digits = _check_digits(digits)
    with torch.random.fork_rng(devices=[]):
        module = nn.Sequential(_layers(arch, n_channels, image_size, len(digits)))
    module.load_state_dict(_pretrained_state_dict(arch, n_channels, image_size,
                                                  cache_dir=cache_dir, digits=digits))
    return module


def _check_digits(digits):
    """The source digits as a sorted tuple; all ten by default."""
    if digits is None:
        return tuple(range(_N_SOURCE_CLASSES))
    checked = sorted({int(d) for d in digits if not isinstance(d, bool)
                      and float(d) == int(d) and 0 <= int(d) < _N_SOURCE_CLASSES})
    if len(checked) != len(digits) or len(checked) < 2:
        raise ValueError(f"digits must list at least two distinct digits from 0 to 9, "
                         f"each once; got {list(digits)!r}.")
    return tuple(checked)


# --------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------

def get_cache_dir():
    """Return the default directory of the pretrained-weights cache.

    The directory is the ``FLEXSK_CACHE_DIR`` environment variable if it is
    set and not empty, else ``$XDG_CACHE_HOME/flexsk`` if ``XDG_CACHE_HOME``
    is set and not empty, else ``~/.cache/flexsk``. It is not created here.

    Returns
    -------
    cache_dir : pathlib.Path
        Absolute path of the cache directory.

    Examples
    --------
    >>> from flexsk.zoo import get_cache_dir
    >>> cache_dir = get_cache_dir()  # e.g. PosixPath('/home/me/.cache/flexsk')
    >>> cache_dir.is_absolute()
    True
    """
    env = os.environ.get("FLEXSK_CACHE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path("~/.cache").expanduser()
    return (base / "flexsk").resolve()


def _recipe_tag():
    """A short hash of everything pretraining depends on besides the architecture."""
    recipe = (_PRETRAIN_SEED, _PRETRAIN_LR, _PRETRAIN_BATCH_SIZE,
              sorted(_PRETRAIN_EPOCHS.items()), sorted(SPLIT_SIZES.items()), PARTITION_SEED)
    return hashlib.sha256(repr(recipe).encode()).hexdigest()[:8]


def _cache_path(arch, n_channels, image_size, cache_dir, digits=None):
    cache_dir = get_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    digits = _check_digits(digits)
    subset = "" if len(digits) == _N_SOURCE_CLASSES else "-d" + "".join(map(str, digits))
    name = f"{arch}-c{n_channels}-s{image_size}{subset}-v{ZOO_VERSION}-{_recipe_tag()}.pt"
    return cache_dir.resolve() / name


def _digest(state_dict):
    """SHA-256 of the names, dtypes, shapes and values of a state dict's tensors."""
    digest = hashlib.sha256()
    for key, tensor in state_dict.items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _non_finite(state_dict):
    return [key for key, tensor in state_dict.items()
            if tensor.is_floating_point() and not torch.isfinite(tensor).all()]


def _save_atomic(state_dict, path):
    """Write ``state_dict``, with its digest, to ``path`` all at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = OrderedDict(state_dict)
    setattr(state_dict, _DIGEST, _digest(state_dict))
    with atomic_write(path) as f:
        torch.save(state_dict, f)


def _load_cached(path, arch, n_channels, image_size, n_classes=_N_SOURCE_CLASSES):
    """The state dict cached at ``path``; raises if it is unreadable or invalid."""
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, dict):
        raise ValueError(f"it holds a {type(state_dict).__name__}, not a state dict")
    stored = getattr(state_dict, _DIGEST, None)
    if stored is None:
        raise ValueError("it has no SHA-256 digest, so flexsk.zoo did not write it")
    if stored != _digest(state_dict):
        raise ValueError("its weights do not match their SHA-256 digest")
    non_finite = _non_finite(state_dict)
    if non_finite:
        raise ValueError(f"non-finite weights in {non_finite}")
    # Check that it fits the architecture (strict keys and shapes).
    with torch.random.fork_rng(devices=[]):
        net = nn.Sequential(_layers(arch, n_channels, image_size, n_classes))
    net.load_state_dict(state_dict)
    return state_dict


def _pretrained_state_dict(arch, n_channels, image_size, *, cache_dir=None,
                           refit=False, verbose=0, digits=None):
    """Pretrained weights of a zoo net: from memory or the cache, else trained and cached."""
    digits = _check_digits(digits)
    path = _cache_path(arch, n_channels, image_size, cache_dir, digits)
    key = str(path)
    if not refit:
        if key in _UNSAVED:
            return _UNSAVED[key]
        if path.exists():
            try:
                return _load_cached(path, arch, n_channels, image_size, len(digits))
            except Exception as exc:  # corrupt, truncated, damaged or mismatched file
                warnings.warn(f"Could not load the cached pretrained weights {key!r} "
                              f"({type(exc).__name__}: {exc}); retraining them.",
                              RuntimeWarning, stacklevel=3)
    state_dict = _pretrain(arch, n_channels, image_size, verbose=verbose, digits=digits)
    try:
        _save_atomic(state_dict, path)
    except OSError as exc:
        warnings.warn(f"Could not write the pretrained weights to {key!r} "
                      f"({type(exc).__name__}: {exc}); keeping them in memory only.",
                      RuntimeWarning, stacklevel=3)
        _UNSAVED[key] = state_dict
    else:
        _UNSAVED.pop(key, None)
    return state_dict


# --------------------------------------------------------------------------
# Pretraining
# --------------------------------------------------------------------------

def _accuracy(module, X, y, batch_size=256):
    module.eval()
    with torch.no_grad():
        pred = torch.cat([module(X[i:i + batch_size]).argmax(1)
                          for i in range(0, len(X), batch_size)])
    return (pred == y).float().mean().item()


def _train(arch, n_channels, image_size, X, y, epochs, n_classes=_N_SOURCE_CLASSES):
    """Train a fresh zoo net on tensors ``X, y`` with the pretraining recipe."""
    module = make_net(arch, n_channels=n_channels, image_size=image_size,
                      n_classes=n_classes)
    optimizer = torch.optim.Adam(module.parameters(), lr=_PRETRAIN_LR)
    criterion = nn.CrossEntropyLoss()
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(X))
        for i in range(0, len(X), _PRETRAIN_BATCH_SIZE):
            idx = order[i:i + _PRETRAIN_BATCH_SIZE]
            optimizer.zero_grad()
            loss = criterion(module(X[idx]), y[idx])
            loss.backward()
            optimizer.step()
    module.eval()
    return module


def _pretrain(arch, n_channels, image_size, *, epochs=None, verbose=0, digits=None):
    """Pretrain a zoo net on the source train split (its ``digits``, output ``i``
    for ``digits[i]``); return its CPU state dict.

    Deterministic: the seed is fixed inside :func:`torch.random.fork_rng`, so
    the global torch RNG state is left untouched.
    """
    epochs = _PRETRAIN_EPOCHS[arch] if epochs is None else epochs
    digits = _check_digits(digits)
    start = time.perf_counter()
    X, y = _source_digits("train", image_size, n_channels, digits)
    n_threads = torch.get_num_threads()
    # One intra-op thread: these nets are tiny, so this is as fast on an idle
    # machine, much faster on a busy one, and makes the result independent of
    # the process's thread count.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_PRETRAIN_SEED)
            module = _train(arch, n_channels, image_size, X, y, epochs, len(digits))
    finally:
        torch.set_num_threads(n_threads)
    if verbose > 0:
        acc = _accuracy(module, *_source_digits("test", image_size, n_channels, digits))
        print(f"[flexsk.zoo] pretrained {arch} (c={n_channels}, s={image_size}): "
              f"{epochs} epochs, source test accuracy {acc:.3f}, "
              f"{time.perf_counter() - start:.1f} s")
    state_dict = {k: v.detach().clone() for k, v in module.state_dict().items()}
    if _non_finite(state_dict):  # pragma: no cover - the recipe is fixed and stable
        raise RuntimeError(f"pretraining {arch} diverged: non-finite weights "
                           f"{_non_finite(state_dict)}.")
    return state_dict


def _source_digits(split, image_size, n_channels, digits):
    """Source images of ``digits`` and their labels as output indices, as tensors."""
    X, y = load_digits_source(split=split, image_size=image_size, n_channels=n_channels,
                              return_X_y=True)
    keep = np.isin(y, digits)
    return torch.from_numpy(X[keep]), torch.from_numpy(np.searchsorted(digits, y[keep]))


# --------------------------------------------------------------------------
# Public loader
# --------------------------------------------------------------------------

@validate_params(
    {
        "arch": [StrOptions(set(ARCHS))],
        "n_channels": [Options(Integral, {1, 3})],
        "image_size": [IMAGE_SIZE],
        "cache_dir": [str, os.PathLike, None],
        "refit": ["boolean"],
        "verbose": ["verbose"],
        "digits": [list, tuple, None],
    },
    prefer_skip_nested_validation=True,
)
def load_source_net(arch="conv4", *, n_channels=1, image_size=16, cache_dir=None,
                    refit=False, verbose=0, digits=None):
    """Load a pretrained source net, ready for fine-tuning, as a skorch estimator.

    The weights are pretrained on the source ``"train"`` split of
    :func:`flexsk.datasets.load_digits_source` (Adam, learning rate ``3e-3``,
    batch size 64, fixed seed and epochs) the first time and cached on disk.

    Parameters
    ----------
    arch : {"conv4", "conv7"}, default="conv4"
        Architecture, see :func:`make_net`.
    n_channels : {1, 3}, default=1
        Number of input channels (grey or colour source digits).
    image_size : int, default=16
        Side of the square input images; a multiple of 8, at least 8.
    cache_dir : str or path-like, default=None
        Directory of the weights cache; ``None`` uses :func:`get_cache_dir`.
    refit : bool, default=False
        If True, pretrain again and overwrite the cached weights.
    verbose : int, default=0
        If positive, print one line when pretraining (architecture, epochs,
        source test accuracy, seconds).
    digits : list of int or None, default=None
        The source digits to pretrain on, at least two; None: all ten.
        Output ``i`` is the ``i``-th smallest, and the net declares them as
        its ``classes``. A net pretrained on some digits is a source for
        *new* classes: tune it to the others with ``FlexTuner(...,
        head="new")`` (see :ref:`new_classes`).

    Returns
    -------
    net : skorch.NeuralNetClassifier
        An initialized estimator whose ``module_`` holds the pretrained
        weights, configured for fine-tuning as in the paper: Adam with the
        lower learning rate ``1e-3``, :class:`torch.nn.CrossEntropyLoss` (the
        module outputs logits), ``batch_size=32``, ``max_epochs=20``,
        ``train_split=None``, shuffled training batches, ``device="cpu"``,
        ``classes=list(range(10))`` (or the ``digits``) and ``verbose=0``. The
        module is re-loaded with the pretrained weights whenever the estimator is
        (re)initialized, e.g. by ``fit`` (unless ``warm_start=True``) or after
        :func:`sklearn.base.clone`. Loading (and pretraining) leaves the
        global torch RNG state untouched.

    Raises
    ------
    ValueError
        If an argument is invalid.

    Warns
    -----
    RuntimeWarning
        If the cached file is corrupt or fails its integrity checks (the
        weights are then retrained) or cannot be written (they are then kept
        in memory for the rest of the process).

    Examples
    --------
    >>> from flexsk.datasets import load_digits_source
    >>> from flexsk.zoo import load_source_net
    >>> net = load_source_net("conv4", image_size=16)
    >>> list(net.module_.named_children())[0][0]
    'conv1'
    >>> X, y = load_digits_source(split="test", image_size=16, return_X_y=True)
    >>> net.score(X, y) > 0.9
    True
    """
    from skorch import NeuralNetClassifier

    n_channels, image_size, _ = _check_net_args("load_source_net", n_channels, image_size)
    checked = _check_digits(digits)
    cache_dir = str(_cache_path(arch, n_channels, image_size, cache_dir).parent)
    _pretrained_state_dict(arch, n_channels, image_size, cache_dir=cache_dir,
                           refit=refit, verbose=verbose, digits=checked)
    subset = {} if digits is None else {"module__digits": list(checked)}
    net = NeuralNetClassifier(
        _source_module,
        module__arch=arch,
        module__n_channels=n_channels,
        module__image_size=image_size,
        module__cache_dir=cache_dir,
        **subset,
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=_FINETUNE_LR,
        batch_size=_FINETUNE_BATCH_SIZE,
        max_epochs=_FINETUNE_MAX_EPOCHS,
        train_split=None,
        iterator_train__shuffle=True,
        classes=list(checked),
        device="cpu",
        verbose=0,
    )
    return net.initialize()
