"""Embedded source and target domains built from scikit-learn's bundled digits.

Nothing here downloads anything: every image comes from
:func:`sklearn.datasets.load_digits` (1,797 images of 8x8 pixels, 174 to 183
per class), upsampled to the zoo nets' input size, and the photo patches of the
MNIST-M-like shift come from :func:`sklearn.datasets.load_sample_images` (two
colour photos bundled with scikit-learn).

The data budget
---------------
Each class is cut once, by a fixed permutation that does not depend on any
``random_state``, into disjoint parts (images per class):

======================  =====  ==========================================
part                    count  used for
======================  =====  ==========================================
source ``"train"``         60  pretraining the zoo nets
source ``"test"``          20  source accuracy, retrieval gallery
target ``"train"``         40  the pool that training subsets are drawn from
target ``"val"``           20  the fixed validation set (never subsampled)
target ``"test"``          34  the test set
======================  =====  ==========================================

That is 174 images per class, the size of the smallest class. The target
parts are the *same* digits for every shift; only the shift differs.

Source domains
--------------
:func:`load_digits_source` gives the clean digits, either grey (one channel)
or as the *colour source domain* (three channels): each digit is painted with
a foreground colour on a background colour, both fixed per digit by a fixed
seed, so the colour source is the same on every call (see
:func:`load_digits_source`).

Target domains
--------------
:func:`make_digits_shift` applies one of the shifts in :data:`SHIFTS` to the
target parts, mirroring the MNIST / ILSVRC settings of Table 2 of Royer &
Lampert (WACV 2020): pixel-level shifts (blur, noise, occlusion), geometric
shifts (random or fixed affine transforms, a fixed rotation, a fixed
down-scaling) and colour / appearance shifts (an MNIST-M-like blend onto photo
patches, a YUV or HSV colour-space shift, the negative image). The default
parameters of each shift are in :data:`SHIFT_DEFAULTS`.

The defaults were chosen so that a zoo net pretrained on the source
``"train"`` part loses a clear but not total share of its accuracy on the
target: the accuracy of each zoo net on each target before tuning is the
number in parentheses in the benchmark's Table 3 (``flexsk bench``, see the
Benchmarks page). ``"invert"`` is the exception: its negative digits fool a
pretrained net completely, while being trivial to undo in the first layer.

Training subsets of the target ``"train"`` pool are drawn, as in the paper's
protocol, with :func:`subsample_per_class`: class-stratified, and nested across
sizes for a fixed ``random_state``. :func:`train_val_test_split` does the whole
split of a target domain in one call: such a training subset, and the fixed
validation and test parts.
"""

import functools
import numbers
from types import MappingProxyType

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from sklearn.datasets import load_digits, load_sample_images
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import (HasMethods, Interval, Options, StrOptions,
                                             validate_params)

from ._checks import IMAGE_SIZE, check_not_bool

__all__ = [
    "SPLIT_SIZES",
    "PARTITION_SEED",
    "SHIFTS",
    "SHIFT_DEFAULTS",
    "COLOUR_SHIFTS",
    "load_digits_source",
    "make_digits_shift",
    "subsample_per_class",
    "train_val_test_split",
]

#: Images per class in each part of the fixed digits partition.
SPLIT_SIZES = {
    "source_train": 60,
    "source_test": 20,
    "target_train": 40,
    "target_val": 20,
    "target_test": 34,
}

#: Seed of the fixed per-class permutation that cuts the digits into the parts
#: of :data:`SPLIT_SIZES` (the same for every ``random_state``).
PARTITION_SEED = 0
#: Seed of the fixed per-digit colours of the colour source domain.
_COLOUR_SEED = 2020
#: Per-channel ranges of the colour source's background and foreground colours.
_BACKGROUND_RANGE = (0.0, 0.4)
_FOREGROUND_RANGE = (0.6, 1.0)


# ----------------------------------------------------------------------------
# Cached raw material (read-only arrays; public helpers return copies)
# ----------------------------------------------------------------------------

def _readonly(array):
    array.flags.writeable = False
    return array


@functools.lru_cache(maxsize=1)
def _digits_cached():
    digits = load_digits()
    return (_readonly(digits.images.astype(np.float32) / 16.0),
            _readonly(digits.target.astype(np.int64)))


@functools.lru_cache(maxsize=1)
def _partition_cached():
    y = _digits_cached()[1]
    rng = np.random.RandomState(PARTITION_SEED)
    parts = {name: [] for name in SPLIT_SIZES}
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        start = 0
        for name, size in SPLIT_SIZES.items():
            parts[name].append(idx[start:start + size])
            start += size
    return {name: _readonly(np.sort(np.concatenate(chunks)))
            for name, chunks in parts.items()}


def _partition_indices():
    """Indices of digits in each part of the fixed per-class partition."""
    return {name: idx.copy() for name, idx in _partition_cached().items()}


@functools.lru_cache(maxsize=8)
def _upsampled_digits_cached(image_size):
    images, target = _digits_cached()
    images = torch.from_numpy(np.array(images))[:, None]
    if image_size != 8:
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear",
                               align_corners=False).clamp_(0.0, 1.0)
    return _readonly(np.ascontiguousarray(images.numpy())), target


def _upsampled_digits(image_size):
    """All digits as float32 ``(N, 1, S, S)`` in [0, 1], bilinearly upsampled."""
    images, target = _upsampled_digits_cached(image_size)
    return images.copy(), target.copy()


@functools.lru_cache(maxsize=1)
def _colour_palette():
    """Fixed ``(background, foreground)`` colours, float32 ``(1797, 3)`` each.

    One row per digit of :func:`sklearn.datasets.load_digits`, drawn once from
    ``RandomState(_COLOUR_SEED)``: every channel of the background in
    ``[0, 0.4]`` and of the foreground in ``[0.6, 1]``, so every channel keeps
    a contrast of at least 0.2 between digit and background.
    """
    n_digits = len(_digits_cached()[1])
    rng = np.random.RandomState(_COLOUR_SEED)
    background = rng.uniform(*_BACKGROUND_RANGE, size=(n_digits, 3))
    foreground = rng.uniform(*_FOREGROUND_RANGE, size=(n_digits, 3))
    return (_readonly(background.astype(np.float32)),
            _readonly(foreground.astype(np.float32)))


@functools.lru_cache(maxsize=1)
def _sample_photos():
    """The bundled sample photos as float32 ``(2, H, W, 3)`` in [0, 1]."""
    images = load_sample_images().images
    height = min(im.shape[0] for im in images)
    width = min(im.shape[1] for im in images)
    photos = np.stack([im[:height, :width, :3] for im in images]).astype(np.float32) / 255.0
    return _readonly(photos)


def _render(grey, idx, n_channels):
    """Render grey digits ``(N, 1, S, S)`` as the 1- or 3-channel source renders them.

    With ``n_channels=3`` each pixel becomes
    ``background + (foreground - background) * grey`` with the fixed colours of
    the digits ``idx`` (see :func:`_colour_palette`).
    """
    if n_channels == 1:
        return np.ascontiguousarray(grey, dtype=np.float32)
    background, foreground = _colour_palette()
    bg = background[idx][:, :, None, None].astype(np.float64)
    fg = foreground[idx][:, :, None, None].astype(np.float64)
    colour = bg + (fg - bg) * np.asarray(grey, dtype=np.float64)
    return np.ascontiguousarray(colour, dtype=np.float32)


@validate_params(
    {
        "split": [StrOptions({"train", "test", "all"})],
        "image_size": [IMAGE_SIZE],
        "n_channels": [Options(numbers.Integral, {1, 3})],
        "return_X_y": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def load_digits_source(*, split="train", image_size=16, n_channels=1, return_X_y=False):
    """Load the source domain: clean digits, upsampled.

    Parameters
    ----------
    split : {"train", "test", "all"}, default="train"
        ``"train"`` holds the 60 images per class the zoo nets are pretrained
        on; ``"test"`` the 20 held-out source images per class, used for the
        source accuracy and as the retrieval gallery; ``"all"`` both.
    image_size : int, default=16
        Side of the square output images, in pixels.
    n_channels : {1, 3}, default=1
        1 gives grey digits. 3 gives the colour source domain (see Notes).
    return_X_y : bool, default=False
        If True, return ``(X, y)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` (float32, ``(N, C, image_size, image_size)``, values in
        [0, 1]), ``target`` (int64), ``DESCR``.
    (X, y) : tuple
        If ``return_X_y`` is True.

    Notes
    -----
    The colour source domain paints each digit in colour: pixel
    ``background + (foreground - background) * grey``, where ``grey`` is the
    grey digit and the two RGB colours are fixed per digit (drawn once from a
    fixed seed, independently of ``split``, ``image_size`` and any
    ``random_state``): every channel of the background lies in [0, 0.4] and of
    the foreground in [0.6, 1]. The colour source is therefore the same on
    every call, and a colour digit is an affine, increasing function of the
    grey one in every channel. The 3-channel targets of
    :func:`make_digits_shift` are rendered the same way before being shifted.

    Examples
    --------
    >>> from flexsk.datasets import load_digits_source
    >>> X, y = load_digits_source(return_X_y=True)
    >>> X.shape, X.dtype.name, y.shape
    ((600, 1, 16, 16), 'float32', (600,))
    >>> load_digits_source(split="test", n_channels=3).data.shape
    (200, 3, 16, 16)
    """
    check_not_bool("load_digits_source", n_channels=n_channels)
    image_size, n_channels = int(image_size), int(n_channels)
    parts = _partition_cached()
    if split == "all":
        idx = np.sort(np.concatenate([parts["source_train"], parts["source_test"]]))
    else:
        idx = parts["source_" + split].copy()
    images, target = _upsampled_digits_cached(image_size)
    X = _render(images[idx], idx, n_channels)
    y = target[idx].copy()
    if return_X_y:
        return X, y
    colour = "grey" if n_channels == 1 else "colour (fixed per-digit colours)"
    return Bunch(data=X, target=y, DESCR=f"Source digits, split={split!r}, "
                 f"{image_size}x{image_size}, {n_channels} channel(s), {colour}.")


# ----------------------------------------------------------------------------
# Shift parameters
# ----------------------------------------------------------------------------

#: Default parameters of every shift of :func:`make_digits_shift` (read-only).
#:
#: Lengths are in output pixels (``sigma``) or fractions of the image side
#: (``size``, ``translate``); angles in degrees, counter-clockwise as displayed.
SHIFT_DEFAULTS = MappingProxyType({
    # pixel-level
    "blur": MappingProxyType({"sigma": 2.5}),
    "noise": MappingProxyType({"std": 0.5}),
    "occlusion": MappingProxyType({"size": 0.5}),
    # geometric
    "random_affine": MappingProxyType({"rotation": (-40.0, 40.0), "shear": (-25.0, 25.0),
                                       "scale": (0.7, 1.1), "translate": 0.12}),
    "fixed_affine": MappingProxyType({"rotation": 20.0, "shear": 20.0, "scale": (0.85, 1.0),
                                      "translate": (0.0, 0.0)}),
    "rotation": MappingProxyType({"angle": 30.0}),
    "scaling": MappingProxyType({"scale": 0.75}),
    # colour and appearance
    "mnistm": MappingProxyType({"patch_size": None}),
    "colorspace": MappingProxyType({"space": "yuv"}),
    "invert": MappingProxyType({}),
})

#: Names of the shifts of :func:`make_digits_shift`.
SHIFTS = tuple(SHIFT_DEFAULTS)

#: The colour shifts: they only exist in colour, so their natural channel count
#: is 3 (the zoo's three-channel nets); every other shift is grey.
COLOUR_SHIFTS = ("mnistm", "colorspace")
_SHIFT_KINDS = {
    "blur": "pixel-level", "noise": "pixel-level", "occlusion": "pixel-level",
    "random_affine": "geometric", "fixed_affine": "geometric", "rotation": "geometric",
    "scaling": "geometric", "mnistm": "appearance", "colorspace": "colour",
    "invert": "appearance",
}


def _real(name, value, *, low=None, high=None, low_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}.")
    value = float(value)
    if low is not None and (value < low or (low_open and value == low)):
        bound = ">" if low_open else ">="
        raise ValueError(f"{name} must be {bound} {low}, got {value!r}.")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}.")
    return value


def _range(name, value, *, low=None, low_open=False, symmetric=True):
    """A ``(lo, hi)`` range; a number ``r`` means ``(-r, r)`` if ``symmetric``."""
    if symmetric and isinstance(value, numbers.Real) and not isinstance(value, bool):
        r = abs(_real(name, value))
        value = (-r, r)
    try:
        lo, hi = value
    except (TypeError, ValueError):
        kind = "a number or a pair (lo, hi)" if symmetric else "a pair (lo, hi)"
        raise ValueError(f"{name} must be {kind}, got {value!r}.") from None
    lo = _real(name, lo, low=low, low_open=low_open)
    hi = _real(name, hi, low=low, low_open=low_open)
    if lo > hi:
        raise ValueError(f"{name} must satisfy lo <= hi, got {value!r}.")
    return (lo, hi)


def _pair(name, value, **bounds):
    """A pair ``(x, y)``; a number ``v`` means ``(v, v)``."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (value, value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a pair, got {value!r}.") from None
    return (_real(name, a, **bounds), _real(name, b, **bounds))


def _resolve_params(shift, params, image_size):
    """Validate ``params`` against ``SHIFT_DEFAULTS[shift]``; return effective ones."""
    if not isinstance(shift, str) or shift not in SHIFT_DEFAULTS:
        raise ValueError(f"Unknown shift {shift!r}; valid shifts are {list(SHIFTS)}.")
    defaults = SHIFT_DEFAULTS[shift]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        valid = list(defaults) if defaults else "none"
        raise ValueError(f"Unknown parameter(s) {unknown} for shift {shift!r}; "
                         f"valid parameters are {valid}.")
    p = {**defaults, **params}
    if shift == "blur":
        p["sigma"] = _real("sigma", p["sigma"], low=0.0, low_open=True)
    elif shift == "noise":
        p["std"] = _real("std", p["std"], low=0.0)
    elif shift == "occlusion":
        p["size"] = _real("size", p["size"], low=0.0, low_open=True, high=1.0)
    elif shift == "random_affine":
        p["rotation"] = _range("rotation", p["rotation"])
        p["shear"] = _range("shear", p["shear"])
        if any(abs(s) >= 90 for s in p["shear"]):
            raise ValueError(f"shear angles must lie in (-90, 90), got {p['shear']!r}.")
        p["scale"] = _range("scale", p["scale"], low=0.0, low_open=True, symmetric=False)
        p["translate"] = _real("translate", p["translate"], low=0.0, high=1.0)
    elif shift == "fixed_affine":
        p["rotation"] = _real("rotation", p["rotation"])
        p["shear"] = _real("shear", p["shear"])
        if abs(p["shear"]) >= 90:
            raise ValueError(f"shear must lie in (-90, 90), got {p['shear']!r}.")
        p["scale"] = _pair("scale", p["scale"], low=0.0, low_open=True)
        p["translate"] = _pair("translate", p["translate"], low=-1.0, high=1.0)
    elif shift == "rotation":
        p["angle"] = _real("angle", p["angle"])
    elif shift == "scaling":
        p["scale"] = _real("scale", p["scale"], low=0.0, low_open=True)
    elif shift == "mnistm":
        size = p["patch_size"]
        largest = min(_sample_photos().shape[1:3])
        if size is None:
            if image_size > largest:
                raise ValueError(
                    f"mnistm crops image_size x image_size photo patches by default "
                    f"(patch_size=None), but the photos are {largest} pixels high: pass "
                    f"image_size <= {largest}, or a patch_size in [1, {largest}] to resize.")
            size = image_size
        if (isinstance(size, bool) or not isinstance(size, numbers.Integral)
                or not 1 <= size <= largest):
            raise ValueError(f"patch_size must be None or an integer in [1, {largest}], got "
                             f"{p['patch_size']!r}.")
        p["patch_size"] = int(size)
    elif shift == "colorspace":
        if p["space"] not in ("yuv", "hsv"):
            raise ValueError(f"space must be 'yuv' or 'hsv', got {p['space']!r}.")
    return p


# ----------------------------------------------------------------------------
# The shifts themselves (all act on float arrays (N, C, S, S))
# ----------------------------------------------------------------------------

def _affine_matrix(rotation=0.0, shear=0.0, scale=(1.0, 1.0)):
    """Forward 2x2 map in display ``(x, y)`` coordinates (y pointing down).

    ``rotation`` is counter-clockwise as displayed, ``shear`` the angle of the
    horizontal shear ``x' = x + tan(shear) * y``, applied after scaling
    ``diag(scale)`` and before rotating.
    """
    t = np.deg2rad(rotation)
    rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    shr = np.array([[1.0, np.tan(np.deg2rad(shear))], [0.0, 1.0]])
    return rot @ shr @ np.diag(np.asarray(scale, dtype=float))


def _warp(image, forward_xy, translate_xy, out=None):
    """Apply ``forward_xy`` about the image centre, then shift by ``translate_xy`` pixels.

    ``image`` is ``(..., S, S)``; the map acts on the last two axes with
    bilinear interpolation (``order=1``) of the image padded with zeros
    (``mode="grid-constant"``, so samples just outside the grid blend with
    the zero padding instead of being cut).
    """
    size = image.shape[-1]
    perm = np.array([[0.0, 1.0], [1.0, 0.0]])  # (x, y) <-> (row, col)
    forward_rc = perm @ forward_xy @ perm
    inverse_rc = np.linalg.inv(forward_rc)
    centre = np.full(2, (size - 1) / 2.0)
    shift_rc = np.array([translate_xy[1], translate_xy[0]], dtype=float)
    offset_rc = centre - inverse_rc @ (centre + shift_rc)
    ndim = image.ndim
    matrix = np.eye(ndim)
    matrix[-2:, -2:] = inverse_rc
    offset = np.zeros(ndim)
    offset[-2:] = offset_rc
    return ndimage.affine_transform(image, matrix, offset=offset, order=1,
                                    mode="grid-constant", cval=0.0,
                                    output=out if out is not None else np.float64)


def _gaussian_blur(X, sigma):
    """Isotropic Gaussian blur of the last two axes of ``X``, ``sigma`` in pixels.

    A true (truncated at 4 sigma) Gaussian filter, :func:`scipy.ndimage.gaussian_filter`,
    with the border handled by replicating the edge pixels.
    """
    sigmas = (0.0,) * (X.ndim - 2) + (sigma, sigma)
    return ndimage.gaussian_filter(np.asarray(X, dtype=np.float64), sigmas, mode="nearest")


_YUV_U_MAX = 0.436
_YUV_V_MAX = 0.615
_RGB_TO_YUV = np.array([
    [0.299, 0.587, 0.114],
    [-0.14713, -0.28886, 0.436],
    [0.615, -0.51499, -0.10001],
])


def _rgb_to_yuv(X):
    """BT.601 YUV of RGB images ``(N, 3, H, W)``, with U and V rescaled into [0, 1].

    ``Y = 0.299 R + 0.587 G + 0.114 B``, ``U' = U / (2 * 0.436) + 0.5`` and
    ``V' = V / (2 * 0.615) + 0.5``, a linear (affine) map of RGB.
    """
    yuv = np.einsum("ij,njhw->nihw", _RGB_TO_YUV, np.asarray(X, dtype=np.float64))
    yuv[:, 1] = yuv[:, 1] / (2 * _YUV_U_MAX) + 0.5
    yuv[:, 2] = yuv[:, 2] / (2 * _YUV_V_MAX) + 0.5
    return yuv


def _rgb_to_hsv(X):
    """HSV of RGB images ``(N, 3, H, W)``, each channel in [0, 1] (as :mod:`colorsys`)."""
    X = np.asarray(X, dtype=np.float64)
    r, g, b = X[:, 0], X[:, 1], X[:, 2]
    maxc = X.max(axis=1)
    minc = X.min(axis=1)
    delta = maxc - minc
    s = np.where(maxc > 0, delta / np.where(maxc > 0, maxc, 1.0), 0.0)
    safe = np.where(delta > 0, delta, 1.0)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = np.where(r == maxc, bc - gc, np.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc))
    h = np.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    return np.stack([h, s, maxc], axis=1)


def _photo_patches(rng, n_images, patch_size, image_size):
    """``n_images`` random RGB patches ``(N, 3, S, S)`` cut from the sample photos."""
    photos = _sample_photos()
    n_photos, height, width, _ = photos.shape
    which = rng.randint(n_photos, size=n_images)
    rows = rng.randint(height - patch_size + 1, size=n_images)
    cols = rng.randint(width - patch_size + 1, size=n_images)
    ar = np.arange(patch_size)
    patches = photos[which[:, None, None], rows[:, None, None] + ar[None, :, None],
                     cols[:, None, None] + ar[None, None, :]]  # (N, P, P, 3)
    patches = np.ascontiguousarray(patches.transpose(0, 3, 1, 2))
    if patch_size != image_size:
        patches = F.interpolate(torch.from_numpy(patches), size=(image_size, image_size),
                                mode="bilinear", align_corners=False,
                                antialias=patch_size > image_size).numpy()
    return patches


def _apply_shift(shift, p, grey, idx, n_channels, rng):
    """Shift the clean grey target digits ``grey`` ``(N, 1, S, S)`` (float64 result)."""
    n_images, _, size, _ = grey.shape
    grey = np.asarray(grey, dtype=np.float64)
    # Geometric shifts act on the grey digit (zero fill = background), then render.
    if shift == "random_affine":
        rotation = rng.uniform(*p["rotation"], size=n_images)
        shear = rng.uniform(*p["shear"], size=n_images)
        scale = rng.uniform(*p["scale"], size=n_images)
        translate = rng.uniform(-p["translate"], p["translate"], size=(n_images, 2)) * size
        warped = np.empty_like(grey)
        for i in range(n_images):
            forward = _affine_matrix(rotation[i], shear[i], (scale[i], scale[i]))
            _warp(grey[i, 0], forward, translate[i], out=warped[i, 0])
        return _render(warped, idx, n_channels)
    if shift == "fixed_affine":
        forward = _affine_matrix(p["rotation"], p["shear"], p["scale"])
        translate = np.asarray(p["translate"]) * size
        return _render(_warp(grey, forward, translate), idx, n_channels)
    if shift == "rotation":
        return _render(_warp(grey, _affine_matrix(rotation=p["angle"]), (0.0, 0.0)),
                       idx, n_channels)
    if shift == "scaling":
        forward = _affine_matrix(scale=(p["scale"], p["scale"]))
        return _render(_warp(grey, forward, (0.0, 0.0)), idx, n_channels)
    # Pixel-level and appearance shifts act on the rendered image.
    X = np.asarray(_render(grey, idx, n_channels), dtype=np.float64)
    if shift == "blur":
        return _gaussian_blur(X, p["sigma"])
    if shift == "noise":
        return X + rng.normal(0.0, 1.0, size=X.shape) * p["std"]
    if shift == "occlusion":
        side = min(size, max(1, int(round(p["size"] * size))))
        tops = rng.randint(size - side + 1, size=n_images)
        lefts = rng.randint(size - side + 1, size=n_images)
        ar = np.arange(size)
        rows = (ar[None, :] >= tops[:, None]) & (ar[None, :] < tops[:, None] + side)
        cols = (ar[None, :] >= lefts[:, None]) & (ar[None, :] < lefts[:, None] + side)
        mask = rows[:, :, None] & cols[:, None, :]
        X[np.broadcast_to(mask[:, None], X.shape)] = 0.0
        return X
    if shift == "mnistm":
        return np.abs(_photo_patches(rng, n_images, p["patch_size"], size) - X)
    if shift == "colorspace":
        return _rgb_to_yuv(X) if p["space"] == "yuv" else _rgb_to_hsv(X)
    if shift == "invert":
        return 1.0 - X
    raise AssertionError(shift)  # pragma: no cover


def _target_clean(image_size, n_channels):
    """Clean target part, rendered like the source: ``(X, y, split, idx)``."""
    parts = _partition_cached()
    idx = np.sort(np.concatenate([parts["target_" + s] for s in ("train", "val", "test")]))
    split_of = np.empty(len(idx), dtype=object)
    for s in ("train", "val", "test"):
        split_of[np.isin(idx, parts["target_" + s])] = s
    images, target = _upsampled_digits_cached(image_size)
    return (_render(images[idx], idx, n_channels), target[idx].copy(),
            split_of.astype(str), idx)


@validate_params(
    {
        "shift": [StrOptions(set(SHIFTS))],
        "split": [StrOptions({"train", "val", "test", "all"})],
        "image_size": [IMAGE_SIZE],
        "n_channels": [Options(numbers.Integral, {1, 3}), None],
        "random_state": ["random_state"],
        "return_X_y": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def make_digits_shift(shift, *, split="all", image_size=16, n_channels=None, random_state=0,
                      return_X_y=False, **shift_params):
    """Load a target domain: the target digits under a domain shift.

    The target parts of the fixed partition (see :data:`SPLIT_SIZES`) are
    upsampled to ``image_size``, rendered like the source domain with
    ``n_channels`` channels (see :func:`load_digits_source`) and shifted. All
    shifts are computed at the output size, so lengths are in output pixels.

    The shift is computed once for the whole target part (train, val and test,
    in increasing digit order, with one random generator seeded by
    ``random_state``) and the rows of ``split`` are then selected: the images
    of ``split="train"`` are exactly the ``"train"`` rows of ``split="all"``,
    and likewise for ``"val"`` and ``"test"``.

    Parameters
    ----------
    shift : str
        One of :data:`SHIFTS`:

        Pixel-level (grey, natural ``n_channels=1``):

        - ``"blur"``: Gaussian blur, ``sigma`` (standard deviation in output
          pixels, default 2.5), via :func:`scipy.ndimage.gaussian_filter`,
          edge pixels replicated at the border.
        - ``"noise"``: additive Gaussian noise of standard deviation ``std``
          (default 0.5), independent per pixel and channel, then clipped.
        - ``"occlusion"``: a black (zero) square of side
          ``round(size * image_size)`` pixels (``size`` default 0.5, a
          fraction of the side) at a uniformly random position per image,
          fully inside the image.

        Geometric (grey, natural ``n_channels=1``); bilinear interpolation
        (``order=1``) about the image centre, zero (background) fill. Angles
        are in degrees, counter-clockwise as displayed:

        - ``"random_affine"``: a random affine map per image: rotation
          uniform in ``rotation`` (default (-40, 40)), horizontal shear angle
          uniform in ``shear`` (default (-25, 25)), isotropic scale uniform in
          ``scale`` (default (0.7, 1.1)) and a translation uniform in
          ``[-translate, translate]`` times the image side per axis (default
          0.12). A number ``r`` for ``rotation`` or ``shear`` means ``(-r, r)``.
        - ``"fixed_affine"``: one affine map for all images: ``scale``
          ``(sx, sy)`` (default (0.85, 1.0)), then horizontal ``shear``
          (default 20), then ``rotation`` (default 20), then ``translate``
          ``(tx, ty)`` as fractions of the side (default (0, 0); positive
          moves right / down).
        - ``"rotation"``: rotation of all images by ``angle`` (default 30).
        - ``"scaling"``: centred down-scaling by ``scale`` (default 0.75),
          padded with background.

        Colour and appearance:

        - ``"mnistm"`` (colour): MNIST-M-like, ``|patch - x|`` per pixel and
          channel, where ``x`` is the colour-rendered digit and ``patch`` a
          random crop of ``patch_size`` x ``patch_size`` photo pixels
          (default None: ``image_size``, i.e. native resolution as in
          MNIST-M), resized to ``image_size``, from one of the two photos of
          :func:`sklearn.datasets.load_sample_images`.
        - ``"colorspace"`` (colour): the colour-rendered digit converted to
          ``space`` (``"yuv"``, default: BT.601 YUV with U and V rescaled
          into [0, 1]; or ``"hsv"``) and fed as if it were RGB.
        - ``"invert"``: the negative image ``1 - x``, grey or colour.

        Grey shifts also accept ``n_channels=3``: they are then applied to the
        colour-rendered digits (the 3-channel source domain), geometric ones
        before rendering (so the padding is the digit's background colour).
    split : {"train", "val", "test", "all"}, default="all"
        Which target part to return (40, 20, 34 or 94 images per class).
    image_size : int, default=16
        Side of the square output images, in pixels (at least 8).
    n_channels : {None, 1, 3}, default=None
        None uses the shift's natural channel count (1 for grey shifts, 3 for
        ``"mnistm"`` and ``"colorspace"``). Colour shifts refuse 1.
    random_state : int, RandomState instance or None, default=0
        Drives all randomness of the shift (noise, per-image affine maps,
        occlusion positions, photo patches). The same integer gives identical
        arrays. Ignored by the deterministic shifts.
    return_X_y : bool, default=False
        If True, return ``(X, y)`` instead of a Bunch.
    **shift_params
        Parameters of the shift, overriding :data:`SHIFT_DEFAULTS[shift]
        <SHIFT_DEFAULTS>`.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data``: float32 ``(N, C, image_size, image_size)`` in [0, 1]
        (clipped); ``target``: int64 ``(N,)``; ``split``: str ``(N,)``, the
        part (``"train"``, ``"val"`` or ``"test"``) of each row; ``shift``;
        ``params``: the effective shift parameters (defaults filled in and
        normalised; ``make_digits_shift(b.shift, **b.params)`` reproduces
        them); ``DESCR``.
    (X, y) : tuple
        If ``return_X_y`` is True.

    Raises
    ------
    ValueError
        For an unknown shift, unknown or invalid shift parameter, bad
        ``split``, ``image_size`` or ``n_channels``.

    Examples
    --------
    >>> from flexsk.datasets import make_digits_shift
    >>> b = make_digits_shift("blur", split="train")
    >>> b.data.shape, b.data.dtype.name, b.params
    ((400, 1, 16, 16), 'float32', {'sigma': 2.5})
    >>> X, y = make_digits_shift("colorspace", space="hsv", split="test", return_X_y=True)
    >>> X.shape
    (340, 3, 16, 16)
    """
    check_not_bool("make_digits_shift", n_channels=n_channels)
    image_size = int(image_size)
    params = _resolve_params(shift, shift_params, image_size)
    natural = 3 if shift in COLOUR_SHIFTS else 1
    n_channels = natural if n_channels is None else int(n_channels)
    if n_channels == 1 and natural == 3:
        raise ValueError(f"Shift {shift!r} is a colour shift and needs n_channels=3 "
                         "(or None); got n_channels=1.")
    rng = check_random_state(random_state)

    grey_all, y_all, split_all, idx = _target_clean(image_size, 1)
    X_all = _apply_shift(shift, params, grey_all, idx, n_channels, rng)
    X_all = np.clip(X_all, 0.0, 1.0).astype(np.float32)

    if split == "all":
        rows = np.arange(len(idx))
    else:
        rows = np.flatnonzero(split_all == split)
    X = np.ascontiguousarray(X_all[rows])
    y = y_all[rows]
    if return_X_y:
        return X, y
    shown = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "no parameters"
    descr = (f"Target digits under the {_SHIFT_KINDS[shift]} shift {shift!r} ({shown}), "
             f"split={split!r}, {image_size}x{image_size}, {n_channels} channel(s), "
             f"random_state={random_state!r}.")
    return Bunch(data=X, target=y, split=split_all[rows].copy(), shift=shift,
                 params=params, DESCR=descr)


# ----------------------------------------------------------------------------
# Subsampling
# ----------------------------------------------------------------------------

@validate_params(
    {
        "y": ["array-like"],
        "n_per_class": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def subsample_per_class(y, n_per_class, *, random_state=None):
    """Class-stratified, nested subsample: ``n_per_class`` indices of every class.

    Following the paper's protocol, the training sets of different sizes are
    drawn from one pool. For a fixed ``random_state`` the subsets are nested:
    every class's indices are permuted once by ``random_state`` and the first
    ``n_per_class`` are kept, so the subset for ``n=2`` is contained in the one
    for ``n=10``, itself contained in the one for ``n=40``. Different
    ``random_state`` values give the repeats.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    n_per_class : int
        Number of samples kept in each class (at least 1).
    random_state : int, RandomState instance or None, default=None
        Seeds the per-class permutations.

    Returns
    -------
    indices : ndarray of shape (n_classes * n_per_class,), dtype int64
        Sorted indices into ``y``.

    Raises
    ------
    ValueError
        If ``n_per_class`` is not a positive integer or a class has fewer than
        ``n_per_class`` samples.

    Examples
    --------
    >>> import numpy as np
    >>> from flexsk.datasets import subsample_per_class
    >>> y = np.repeat([0, 1, 2], 5)
    >>> small = subsample_per_class(y, 2, random_state=0)
    >>> large = subsample_per_class(y, 4, random_state=0)
    >>> np.bincount(y[small]).tolist(), bool(np.isin(small, large).all())
    ([2, 2, 2], True)
    """
    check_not_bool("subsample_per_class", n_per_class=n_per_class)
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be one-dimensional, got shape {y.shape}.")
    if len(y) == 0:
        raise ValueError("y is empty: there is nothing to draw from.")
    rng = check_random_state(random_state)
    classes, counts = np.unique(y, return_counts=True)
    short = {c.item() if hasattr(c, "item") else c: int(k)
             for c, k in zip(classes, counts) if k < n_per_class}
    if short:
        raise ValueError(f"Cannot draw n_per_class={n_per_class} samples per class: "
                         f"class(es) with fewer samples (label: count): {short}.")
    chosen = []
    for label in classes:
        members = np.flatnonzero(y == label)
        chosen.append(rng.permutation(members)[:n_per_class])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


@validate_params(
    {
        "bunch": [HasMethods(["keys"])],
        "n_per_class": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def train_val_test_split(bunch, n_per_class, *, random_state=None):
    """Split a target domain: a small training set, and the fixed validation and test parts.

    The training set is :func:`subsample_per_class` of the ``"train"`` rows
    (the pool of 40 images per class), so for a fixed ``random_state`` the
    training sets of different sizes are nested, as in the paper's protocol.
    The validation and test sets are all the ``"val"`` and ``"test"`` rows,
    the same for every size and seed. Rows keep the order of ``bunch``.

    Parameters
    ----------
    bunch : :class:`~sklearn.utils.Bunch`
        A target domain from :func:`make_digits_shift` with ``split="all"``:
        ``data``, ``target`` and the part of each row, ``split``.
    n_per_class : int
        Training images per class, from 1 to the pool's 40
        (``SPLIT_SIZES["target_train"]``).
    random_state : int, RandomState instance or None, default=None
        Draws the training subset; use the repeat's number for repeats.

    Returns
    -------
    X_train, y_train : ndarray
        ``n_per_class`` images of every class from the ``"train"`` part.
    X_val, y_val : ndarray
        The whole ``"val"`` part (20 images per class).
    X_test, y_test : ndarray
        The whole ``"test"`` part (34 images per class).

    Raises
    ------
    ValueError
        If ``bunch`` has no ``data``, ``target`` or ``split``, or a class has
        fewer than ``n_per_class`` training images.

    See Also
    --------
    subsample_per_class : The stratified, nested draw of the training set.

    Examples
    --------
    >>> from flexsk.datasets import make_digits_shift, train_val_test_split
    >>> target = make_digits_shift("rotation")
    >>> X_train, y_train, X_val, y_val, X_test, y_test = train_val_test_split(
    ...     target, 10, random_state=0)
    >>> X_train.shape, X_val.shape, X_test.shape
    ((100, 1, 16, 16), (200, 1, 16, 16), (340, 1, 16, 16))
    """
    missing = [key for key in ("data", "target", "split") if key not in bunch]
    if missing:
        raise ValueError(f"bunch must hold data, target and split (as make_digits_shift "
                         f"returns with split='all'); it has no {', '.join(missing)}.")
    X, y, split = bunch["data"], np.asarray(bunch["target"]), np.asarray(bunch["split"])
    pool, val, test = (np.flatnonzero(split == part) for part in ("train", "val", "test"))
    empty = [part for part, rows in zip(("train", "val", "test"), (pool, val, test))
             if not len(rows)]
    if empty:
        raise ValueError(f"bunch has no {', '.join(map(repr, empty))} rows: make it with "
                         f"make_digits_shift(..., split='all').")
    train = pool[subsample_per_class(y[pool], n_per_class, random_state=random_state)]
    return X[train], y[train], X[val], y[val], X[test], y[test]
