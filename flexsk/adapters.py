"""Pixel-level adapter units: small image-to-image modules before the pretrained net.

Royer & Lampert (WACV 2020, Section 5.4) add an *image-to-image unit* in front
of the pretrained network and let flex-tuning consider it as one more unit:
training only that unit maps target images back towards the source domain
while every pretrained weight stays untouched. This module provides three such
units, each specialised to a kind of shift, and each **the identity at
initialization**, so the pretrained function is unchanged until it is trained:

- :class:`ColorAdapter`: an affine map of the channels at every pixel (a 1x1
  convolution), for colour-space changes and tints;
- :class:`SpatialAdapter`: an affine warp per image (a spatial transformer
  network), for rotation, scaling and affine shifts;
- :class:`UNetAdapter`: a local residual correction (a small U-Net with skip
  connections), for blur, noise and background shifts.

:class:`FlexTuner(pixel_adapter=...) <flexsk.FlexTuner>` builds them; they also
work on their own, for any channel count and images of at least 8 x 8 pixels.
Inputs must be 2D images, ``(n_samples, n_channels, height, width)``; anything
else raises a :class:`ValueError`.

Gain
----
Fine-tuning uses Adam (the paper's and the zoo nets' choice), whose steps are
about ``lr`` in size whatever the scale of the gradient. A pretrained
convolution moves a lot relative to its small weights at ``lr=1e-3``, but
an identity 1x1 convolution or an affine matrix has entries of size 1: undoing
a 30 degree rotation or a change of colour space needs changes of about 0.5 to 2,
i.e. hundreds to thousands of steps. :class:`ColorAdapter` and
:class:`SpatialAdapter` therefore store their trainable parameters divided by
``gain`` (an "equalized learning rate"): the map they apply is
``identity + gain * delta`` with ``delta`` trained and starting at zero, so
they move ``gain`` times faster than the network's own weights. ``gain=1`` is
the plain parametrization. On the digits' YUV colour-space shift (conv4, 16
px, 10 images per class) the colour adapter reached 0.96 validation accuracy
in 12 epochs with ``gain=10``, against 0.88 after 34 epochs with ``gain=1``;
the spatial adapter did about as well with either on the geometric shifts
(its localisation features already scale the updates of its affine output).
"""

import torch
import torch.nn.functional as F
from torch import nn

from ._units import Unit

__all__ = ["ColorAdapter", "SpatialAdapter", "UNetAdapter", "AdaptedNet", "ADAPTERS",
           "MIN_IMAGE_SIZE"]

#: Smallest image side the adapters accept.
MIN_IMAGE_SIZE = 8


def _check_images(module, x):
    if x.dim() != 4:
        raise ValueError(
            f"{type(module).__name__} is a pixel-level adapter for 2D images and expects "
            f"inputs of shape (n_samples, n_channels, height, width); got a tensor of "
            f"shape {tuple(x.shape)}.")
    if x.shape[1] != module.n_channels:
        raise ValueError(f"{type(module).__name__} was built for {module.n_channels} "
                         f"channels; got images with {x.shape[1]}.")
    if min(x.shape[2:]) < MIN_IMAGE_SIZE:
        raise ValueError(f"{type(module).__name__} needs images of at least "
                         f"{MIN_IMAGE_SIZE} x {MIN_IMAGE_SIZE} pixels; got "
                         f"{x.shape[2]} x {x.shape[3]}.")


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


def _check_gain(gain):
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not gain > 0:
        raise ValueError(f"gain must be a positive number, got {gain!r}.")
    return float(gain)


class ColorAdapter(nn.Module):
    """A 1x1 convolution initialized to the identity: an affine map of the channels.

    Every pixel's channel vector ``c`` becomes ``W c + b``, with the same
    ``W`` and ``b`` everywhere: enough to undo any linear or affine colour
    space change (RGB to YUV, channel swaps, tints, contrast).

    Parameters
    ----------
    n_channels : int
        Number of image channels (in and out).
    gain : float, default=10.0
        ``W = I + gain * weight_delta`` and ``b = gain * bias_delta``: the
        parameters move ``gain`` times faster under Adam (see the module
        docstring). ``gain=1`` is a plain 1x1 convolution.

    Attributes
    ----------
    weight_delta : torch.nn.Parameter of shape (n_channels, n_channels, 1, 1)
        Starts at zero.
    bias_delta : torch.nn.Parameter of shape (n_channels,)
        Starts at zero.

    Examples
    --------
    >>> import torch
    >>> from flexsk.adapters import ColorAdapter
    >>> x = torch.rand(2, 3, 8, 8)
    >>> torch.equal(ColorAdapter(3)(x), x)
    True
    """

    def __init__(self, n_channels, *, gain=10.0):
        super().__init__()
        self.n_channels = _check_positive_int("n_channels", n_channels)
        self.gain = _check_gain(gain)
        self.register_buffer("identity",
                             torch.eye(n_channels).reshape(n_channels, n_channels, 1, 1),
                             persistent=False)
        self.weight_delta = nn.Parameter(torch.zeros(n_channels, n_channels, 1, 1))
        self.bias_delta = nn.Parameter(torch.zeros(n_channels))

    @property
    def weight(self):
        """The 1x1 kernel applied, ``I + gain * weight_delta``."""
        return self.identity + self.gain * self.weight_delta

    @property
    def bias(self):
        """The bias applied, ``gain * bias_delta``."""
        return self.gain * self.bias_delta

    def forward(self, x):
        _check_images(self, x)
        return F.conv2d(x, self.weight, self.bias)


class SpatialAdapter(nn.Module):
    """A spatial transformer: one affine warp per image, starting as the identity.

    A small localisation network looks at the image and predicts a 2x3 affine
    matrix ``theta = I + gain * (A h + t)``, where ``h`` are the localisation
    features and the final layer (``A``, ``t``) is zero-initialized. The
    image is resampled on the warped grid (bilinear, border padding,
    :func:`torch.nn.functional.affine_grid` / ``grid_sample`` with
    ``align_corners=False``). Trained, ``t`` learns a warp shared by every
    image (a fixed rotation or scaling) and ``A`` per-image corrections.

    Parameters
    ----------
    n_channels : int
        Number of image channels.
    hidden : int, default=8
        Channels of the localisation net's first convolution (the second has
        twice as many).
    gain : float, default=10.0
        Speed-up of the affine output under Adam (see the module docstring).

    Notes
    -----
    Bilinear resampling on the identity grid reproduces an image only up to
    float rounding (about 1e-7), so the adapter returns
    ``x + warp(x, theta) - warp(x, I)``: exactly ``x`` while ``theta`` is
    the identity, and the warped image up to that rounding once trained.

    Examples
    --------
    >>> import torch
    >>> from flexsk.adapters import SpatialAdapter
    >>> x = torch.rand(2, 1, 16, 16)
    >>> torch.equal(SpatialAdapter(1)(x), x)
    True
    """

    def __init__(self, n_channels, *, hidden=8, gain=10.0):
        super().__init__()
        self.n_channels = _check_positive_int("n_channels", n_channels)
        hidden = _check_positive_int("hidden", hidden)
        self.gain = _check_gain(gain)
        self.localization = nn.Sequential(
            nn.Conv2d(n_channels, hidden, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(hidden, 2 * hidden, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(2 * hidden * 16, 32), nn.ReLU())
        self.theta = nn.Linear(32, 6)
        nn.init.zeros_(self.theta.weight)
        nn.init.zeros_(self.theta.bias)
        self.register_buffer("identity", torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
                             persistent=False)

    def affine(self, x):
        """The affine matrices, of shape (n_samples, 2, 3), for images ``x``."""
        _check_images(self, x)
        delta = self.theta(self.localization(x)).view(-1, 2, 3)
        return self.identity + self.gain * delta

    def _warp(self, x, theta):
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                             align_corners=False)

    def forward(self, x):
        theta = self.affine(x)
        identity = self.identity.expand_as(theta)
        # Resampling on the identity grid is only the identity up to rounding
        # (~1e-7); subtracting it makes the untrained adapter exact.
        return x + (self._warp(x, theta) - self._warp(x, identity))


class UNetAdapter(nn.Module):
    """A small U-Net with a zero-initialized residual output: ``x + unet(x)``.

    Two scales: an encoder block at full resolution, one at half resolution,
    upsampled back (bilinear) and concatenated with the full-resolution
    features (the skip connection), a decoder block, and a 1x1 output
    convolution whose weights and bias start at zero, so the adapter starts
    as the exact identity. The skip connection and the residual output keep
    the correction local, which suits blur, noise and background shifts
    (the paper's Pix2Pix unit, Section 5.4, scaled down).

    Parameters
    ----------
    n_channels : int
        Number of image channels (in and out).
    width : int, default=16
        Channels of the full-resolution blocks (twice as many at half
        resolution).

    Examples
    --------
    >>> import torch
    >>> from flexsk.adapters import UNetAdapter
    >>> x = torch.rand(2, 3, 9, 12)
    >>> torch.equal(UNetAdapter(3)(x), x)
    True
    """

    def __init__(self, n_channels, *, width=16):
        super().__init__()
        self.n_channels = _check_positive_int("n_channels", n_channels)
        width = _check_positive_int("width", width)
        self.encode = nn.Sequential(
            nn.Conv2d(n_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU())
        self.decode = nn.Sequential(
            nn.Conv2d(3 * width, width, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(width, n_channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        _check_images(self, x)
        skip = self.encode(x)
        low = F.interpolate(self.down(skip), size=skip.shape[-2:], mode="bilinear",
                            align_corners=False)
        return x + self.out(self.decode(torch.cat([low, skip], dim=1)))


#: ``pixel_adapter`` kind -> adapter class, in the order ``"auto"`` chains them.
ADAPTERS = {"color": ColorAdapter, "spatial": SpatialAdapter, "unet": UNetAdapter}


class AdaptedNet(nn.Module):
    """A pretrained network behind a chain of pixel-level adapters.

    ``forward(x) = net(adapter_k(... adapter_1(x)))``. Each adapter is a
    child named ``"adapter_<kind>"``; the network is the child ``net``, so
    its module ``conv1`` is ``net.conv1`` here.

    Parameters
    ----------
    net : torch.nn.Module
        The pretrained network. Held, not copied.
    adapters : dict of str to torch.nn.Module
        Kind (e.g. ``"color"``) -> adapter, in the order they run.

    Attributes
    ----------
    adapter_names : list of str
        The adapters' child names, ``"adapter_<kind>"``, in the order they run.
    net : torch.nn.Module
        The pretrained network.

    Examples
    --------
    >>> import torch
    >>> from flexsk.adapters import AdaptedNet, ColorAdapter
    >>> from flexsk.zoo import make_net
    >>> adapted = AdaptedNet(make_net("conv4", n_channels=3), {"color": ColorAdapter(3)})
    >>> [name for name, _ in adapted.named_children()]
    ['adapter_color', 'net']
    >>> x = torch.rand(2, 3, 16, 16)
    >>> torch.equal(adapted(x), adapted.net(x))  # the adapter starts as the identity
    True
    """

    def __init__(self, net, adapters):
        super().__init__()
        self.adapter_names = [f"adapter_{kind}" for kind in adapters]
        for name, adapter in zip(self.adapter_names, adapters.values()):
            self.add_module(name, adapter)
        self.net = net

    def forward(self, x):
        for name in self.adapter_names:
            x = getattr(self, name)(x)
        return self.net(x)


def _kinds(pixel_adapter):
    return list(ADAPTERS) if pixel_adapter == "auto" else [pixel_adapter]


def attach(module, units, pixel_adapter, input_shape, seed):
    """Wrap ``module`` in an :class:`AdaptedNet`; return it and its units.

    The adapter units come first (``"adapter_color"``, ...), then the
    network's units under their own names, their modules prefixed with
    ``"net."``. Random initial weights (localisation net, U-Net) come from
    ``seed``; the global torch RNG is left alone.
    """
    if len(input_shape) != 3:
        raise ValueError(
            f"pixel_adapter={pixel_adapter!r} adds a pixel-level adapter for 2D images, "
            f"which needs inputs of shape (n_samples, n_channels, height, width); got "
            f"inputs of shape (n_samples, {', '.join(map(str, input_shape))}). Use "
            f"pixel_adapter=None for non-image inputs.")
    n_channels, height, width = input_shape
    if min(height, width) < MIN_IMAGE_SIZE:
        raise ValueError(f"pixel_adapter needs images of at least {MIN_IMAGE_SIZE} x "
                         f"{MIN_IMAGE_SIZE} pixels; got {height} x {width}.")
    kinds = _kinds(pixel_adapter)
    taken = {f"adapter_{kind}" for kind in kinds} & {unit.name for unit in units}
    if taken:
        raise ValueError(f"Unit names {sorted(taken)} are taken by pixel_adapter; rename "
                         f"those units.")
    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adapters = {kind: ADAPTERS[kind](n_channels).to(device) for kind in kinds}
    wrapped = AdaptedNet(module, adapters)
    adapter_units = [Unit(name, (name,)) for name in wrapped.adapter_names]
    return wrapped, adapter_units + [inside(unit) for unit in units]


def inside(unit):
    """A unit of the wrapped network, as a unit of its :class:`AdaptedNet`."""
    return Unit(unit.name, tuple(f"net.{m}" for m in unit.modules),
                tuple(f"net.{p}" for p in unit.params))
