"""Tests of the embedded source and target domains (flexsk.datasets)."""

import colorsys

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import pairwise_distances

from flexsk.datasets import (
    COLOUR_SHIFTS as PUBLIC_COLOUR_SHIFTS,
    SHIFT_DEFAULTS,
    SHIFTS,
    SPLIT_SIZES,
    _gaussian_blur,
    _partition_indices,
    _target_clean,
    _upsampled_digits,
    load_digits_source,
    make_digits_shift,
    subsample_per_class,
    train_val_test_split,
)

S = 16
N_CLASSES = 10
PER_CLASS = {"train": 40, "val": 20, "test": 34, "all": 94}
RANDOM_SHIFTS = ("noise", "occlusion", "random_affine", "mnistm")
DETERMINISTIC_SHIFTS = tuple(s for s in SHIFTS if s not in RANDOM_SHIFTS)
COLOUR_SHIFTS = ("mnistm", "colorspace")
GREY_SHIFTS = tuple(s for s in SHIFTS if s not in COLOUR_SHIFTS)


# --------------------------------------------------------------------------
# Reference data computed independently of make_digits_shift
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def target_idx():
    parts = _partition_indices()
    return np.sort(np.concatenate([parts["target_train"], parts["target_val"],
                                   parts["target_test"]]))


@pytest.fixture(scope="module")
def clean_grey(target_idx):
    """Unshifted grey target digits: upsampled digits at the target indices."""
    images, _ = _upsampled_digits(S)
    return images[target_idx].astype(np.float64)


@pytest.fixture(scope="module")
def clean_colour(clean_grey):
    X, _, _, _ = _target_clean(S, 3)
    X = X.astype(np.float64)
    # The colour rendering must be an increasing affine map of the grey digit
    # in every channel (checked here so every test using it relies on it).
    _check_affine_colouring(clean_grey, X)
    return X


def _check_affine_colouring(grey, colour):
    g = grey[:, 0].reshape(len(grey), -1)
    for c in range(3):
        v = colour[:, c].reshape(len(colour), -1)
        gm, vm = g.mean(1, keepdims=True), v.mean(1, keepdims=True)
        slope = ((g - gm) * (v - vm)).sum(1) / ((g - gm) ** 2).sum(1)
        intercept = vm[:, 0] - slope * gm[:, 0]
        resid = v - (intercept[:, None] + slope[:, None] * g)
        assert np.abs(resid).max() < 1e-5
        assert slope.min() >= 0.2 - 1e-6
        assert intercept.min() >= -1e-6 and intercept.max() <= 0.4 + 1e-6
        assert (intercept + slope).min() >= 0.6 - 1e-6
        assert (intercept + slope).max() <= 1.0 + 1e-6


def _clean(clean_grey, clean_colour, n_channels):
    return clean_grey if n_channels == 1 else clean_colour


def _total_variation(X):
    return (np.abs(np.diff(X, axis=-1)).sum((-1, -2, -3))
            + np.abs(np.diff(X, axis=-2)).sum((-1, -2, -3)))


# --------------------------------------------------------------------------
# API basics
# --------------------------------------------------------------------------

def test_shift_names_and_defaults():
    assert SHIFTS == ("blur", "noise", "occlusion", "random_affine", "fixed_affine",
                      "rotation", "scaling", "mnistm", "colorspace", "invert")
    assert tuple(SHIFT_DEFAULTS) == SHIFTS
    with pytest.raises(TypeError):
        SHIFT_DEFAULTS["blur"]["sigma"] = 3.0
    with pytest.raises(TypeError):
        SHIFT_DEFAULTS["new"] = {}
    # Defaults are what make_digits_shift reports as its effective parameters.
    for shift in SHIFTS:
        params = make_digits_shift(shift, split="val").params
        assert set(params) == set(SHIFT_DEFAULTS[shift])


def test_budget_table_is_true():
    assert sum(SPLIT_SIZES.values()) == 174
    parts = _partition_indices()
    from sklearn.datasets import load_digits
    y = load_digits().target
    for name, size in SPLIT_SIZES.items():
        np.testing.assert_array_equal(np.bincount(y[parts[name]], minlength=10),
                                      np.full(10, size))
    # load_digits_source agrees with the table.
    assert load_digits_source(split="train").data.shape[0] == 600
    assert load_digits_source(split="test").data.shape[0] == 200


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("split", ["train", "val", "test", "all"])
def test_shapes_dtype_range(shift, split):
    b = make_digits_shift(shift, split=split)
    n_channels = 3 if shift in COLOUR_SHIFTS else 1
    n = PER_CLASS[split] * N_CLASSES
    assert b.data.shape == (n, n_channels, S, S)
    assert b.data.dtype == np.float32 and b.data.flags.c_contiguous
    assert np.isfinite(b.data).all()
    assert b.data.min() >= 0.0 and b.data.max() <= 1.0
    assert b.target.dtype == np.int64 and b.target.shape == (n,)
    np.testing.assert_array_equal(np.bincount(b.target, minlength=10),
                                  np.full(10, PER_CLASS[split]))
    assert b.split.shape == (n,)
    if split == "all":
        for s in ("train", "val", "test"):
            assert (b.split == s).sum() == PER_CLASS[s] * N_CLASSES
    else:
        assert set(b.split) == {split}
    assert b.shift == shift and isinstance(b.params, dict) and shift in b.DESCR
    X, y = make_digits_shift(shift, split=split, return_X_y=True)
    np.testing.assert_array_equal(X, b.data)
    np.testing.assert_array_equal(y, b.target)


@pytest.mark.parametrize("shift", SHIFTS)
def test_split_rows_are_rows_of_all(shift):
    full = make_digits_shift(shift, split="all", random_state=3)
    for split in ("train", "val", "test"):
        part = make_digits_shift(shift, split=split, random_state=3)
        rows = full.split == split
        np.testing.assert_array_equal(part.data, full.data[rows])
        np.testing.assert_array_equal(part.target, full.target[rows])


@pytest.mark.parametrize("shift", SHIFTS)
def test_seeding(shift):
    a = make_digits_shift(shift, split="train", random_state=0).data
    b = make_digits_shift(shift, split="train", random_state=0).data
    c = make_digits_shift(shift, split="train", random_state=1).data
    np.testing.assert_array_equal(a, b)
    if shift in RANDOM_SHIFTS:
        # Different seeds change most images, not just a few pixels.
        changed = np.abs(a - c).reshape(len(a), -1).max(1) > 1e-3
        assert changed.mean() > 0.5
    else:
        np.testing.assert_array_equal(a, c)
    # A RandomState instance is accepted as well.
    d = make_digits_shift(shift, split="train", random_state=np.random.RandomState(0)).data
    np.testing.assert_array_equal(a, d)


def test_params_reproduce_the_domain():
    b = make_digits_shift("fixed_affine", rotation=10, scale=0.9, random_state=0)
    assert b.params["scale"] == (0.9, 0.9)
    again = make_digits_shift(b.shift, random_state=0, **b.params)
    np.testing.assert_array_equal(b.data, again.data)
    b = make_digits_shift("random_affine", rotation=15)
    assert b.params["rotation"] == (-15.0, 15.0)
    assert make_digits_shift("mnistm").params["patch_size"] == S


@pytest.mark.parametrize("shift", SHIFTS)
def test_every_shift_changes_images(shift, clean_grey, clean_colour):
    b = make_digits_shift(shift)
    clean = _clean(clean_grey, clean_colour, b.data.shape[1])
    mad = np.abs(b.data - clean).mean()
    assert mad > 0.05, mad
    # ... and in almost every image.
    per_image = np.abs(b.data - clean).mean((1, 2, 3))
    assert (per_image > 0.01).mean() > 0.95


@pytest.mark.parametrize("shift", GREY_SHIFTS)
def test_grey_shifts_accept_three_channels(shift, clean_colour):
    b = make_digits_shift(shift, n_channels=3, split="val")
    assert b.data.shape == (200, 3, S, S)
    assert b.data.dtype == np.float32
    assert 0.0 <= b.data.min() and b.data.max() <= 1.0
    # Colour, not three copies of one grey channel.
    assert np.abs(b.data[:, 0] - b.data[:, 1]).mean() > 0.02
    assert make_digits_shift(shift, n_channels=1, split="val").data.shape[1] == 1


def test_colour_source_is_coloured_and_deterministic(clean_grey):
    parts = _partition_indices()
    grey = load_digits_source(split="all", n_channels=1).data
    a = load_digits_source(split="all", n_channels=3)
    b = load_digits_source(split="all", n_channels=3)
    np.testing.assert_array_equal(a.data, b.data)
    assert a.data.shape == (800, 3, S, S) and a.data.dtype == np.float32
    _check_affine_colouring(grey.astype(np.float64), a.data.astype(np.float64))
    # Many different colours, not replicated grey.
    bg = a.data[:, :, 0, 0]
    assert np.abs(a.data[:, 0] - a.data[:, 1]).mean() > 0.05
    assert len(np.unique(bg.round(3), axis=0)) > 700
    # "all" rows are the train and test rows.
    all_idx = np.sort(np.concatenate([parts["source_train"], parts["source_test"]]))
    train = load_digits_source(split="train", n_channels=3).data
    np.testing.assert_array_equal(train, a.data[np.isin(all_idx, parts["source_train"])])
    # The cached arrays cannot be changed through the returned copies.
    a.data[:] = 0.0
    np.testing.assert_array_equal(load_digits_source(split="all", n_channels=3).data, b.data)
    images, _ = _upsampled_digits(S)
    images[:] = 0.0
    assert _upsampled_digits(S)[0].max() > 0.9


# --------------------------------------------------------------------------
# Disjointness of the parts
# --------------------------------------------------------------------------

def test_parts_are_disjoint_by_index():
    parts = _partition_indices()
    names = list(parts)
    for i, a in enumerate(names):
        assert len(np.unique(parts[a])) == len(parts[a])
        for b in names[i + 1:]:
            assert np.intersect1d(parts[a], parts[b]).size == 0, (a, b)


def test_no_target_image_equals_a_source_image(target_idx):
    from sklearn.datasets import load_digits
    raw = load_digits().images
    parts = _partition_indices()
    source_idx = np.concatenate([parts["source_train"], parts["source_test"]])
    source = {raw[i].tobytes() for i in source_idx}
    assert not any(raw[i].tobytes() in source for i in target_idx)
    # The same holds for the returned arrays: the negative of the "invert"
    # target is the clean target, and none of its images is a source image.
    clean_target = 1.0 - make_digits_shift("invert").data
    src = load_digits_source(split="all").data
    np.testing.assert_allclose(clean_target, _upsampled_digits(S)[0][target_idx], atol=1e-6)
    d = pairwise_distances(clean_target.reshape(len(clean_target), -1),
                           src.reshape(len(src), -1))
    assert d.min() > 1e-3
    # Target parts are disjoint at the pixel level too.
    parts_data = {s: make_digits_shift("invert", split=s).data.reshape(-1, S * S)
                  for s in ("train", "val", "test")}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert pairwise_distances(parts_data[a], parts_data[b]).min() > 1e-3, (a, b)


# --------------------------------------------------------------------------
# Pixel-level shifts
# --------------------------------------------------------------------------

def test_gaussian_blur_impulse_profile():
    sigma = SHIFT_DEFAULTS["blur"]["sigma"]
    size, c = 61, 30
    impulse = np.zeros((1, 1, size, size))
    impulse[0, 0, c, c] = 1.0
    v = _gaussian_blur(impulse, sigma)[0, 0]
    np.testing.assert_allclose(v.sum(), 1.0, rtol=1e-6)
    # Neighbouring-pixel ratios of a Gaussian exp(-d^2 / (2 sigma^2)).
    np.testing.assert_allclose(v[c, c + 1] / v[c, c], np.exp(-1 / (2 * sigma ** 2)), rtol=1e-3)
    np.testing.assert_allclose(v[c, c + 2] / v[c, c + 1], np.exp(-3 / (2 * sigma ** 2)),
                               rtol=1e-3)
    np.testing.assert_allclose(v[c + 1, c + 1] / v[c, c], np.exp(-2 / (2 * sigma ** 2)),
                               rtol=1e-3)
    np.testing.assert_allclose(v[c + 3, c - 2] / v[c, c], np.exp(-13 / (2 * sigma ** 2)),
                               rtol=1e-3)
    # Peak of a sampled normalised 2D Gaussian, and isotropy.
    k = np.exp(-np.arange(-30, 31) ** 2 / (2 * sigma ** 2))
    np.testing.assert_allclose(v[c, c], 1.0 / k.sum() ** 2, rtol=1e-3)
    np.testing.assert_allclose(v, v.T, atol=1e-12)
    np.testing.assert_allclose(v, v[::-1, ::-1], atol=1e-12)
    # Not a box filter: no flat top, and no cut-off within 3 sigma.
    assert v[c, c + 1] < v[c, c] and v[c, c + int(3 * sigma)] > 0.0


@pytest.mark.parametrize("sigma", [1.0, SHIFT_DEFAULTS["blur"]["sigma"]])
def test_blur_matches_reference_gaussian(sigma, clean_grey):
    X = make_digits_shift("blur", sigma=sigma).data.astype(np.float64)
    # Independent reference: separable sampled Gaussian, edge-replicated border.
    r = 4 * int(np.ceil(sigma)) + 4
    k = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    padded = np.pad(clean_grey, ((0, 0), (0, 0), (r, r), (r, r)), mode="edge")
    rows = sum(k[j] * padded[:, :, j:j + S, :] for j in range(2 * r + 1))
    ref = sum(k[j] * rows[:, :, :, j:j + S] for j in range(2 * r + 1))
    np.testing.assert_allclose(X, ref, atol=2e-4)


def test_blur_smooths(clean_grey):
    X = make_digits_shift("blur").data.astype(np.float64)
    tv_ratio = _total_variation(X) / _total_variation(clean_grey)
    assert (tv_ratio < 1.0).all()
    assert np.median(tv_ratio) < 0.75

    # High-frequency energy (outside the central quarter of the spectrum) drops.
    def high_energy(Y):
        f = np.abs(np.fft.fftshift(np.fft.fft2(Y[:, 0]), axes=(-2, -1))) ** 2
        f[:, S // 4:3 * S // 4, S // 4:3 * S // 4] = 0.0
        return f.sum((-1, -2))
    ratio = high_energy(X) / high_energy(clean_grey)
    assert (ratio < 1.0).all() and np.median(ratio) < 0.3


@pytest.mark.parametrize("std", [0.2, SHIFT_DEFAULTS["noise"]["std"]])
def test_noise_has_documented_std(std, clean_grey):
    X = make_digits_shift("noise", std=std, random_state=5).data.astype(np.float64)
    # On background pixels (clean == 0) the output is clip(N(0, std), 0, 1).
    bg = clean_grey == 0.0
    vals = X[bg]
    assert vals.size > 50_000
    p_pos = stats.norm.sf(0.0, scale=std)
    p_top = stats.norm.sf(1.0, scale=std)
    mean = (stats.norm(scale=std).expect(lambda x: x, lb=0.0, ub=1.0) + p_top)
    assert abs((vals > 0).mean() - p_pos) < 0.01
    assert abs(vals.mean() - mean) < 0.01
    # On bright pixels the noise is symmetric: as many pixels go down as up.
    bright = (clean_grey > 0.3) & (clean_grey < 0.7)
    diff = X[bright] - clean_grey[bright]
    assert abs((diff > 0).mean() - 0.5) < 0.05


@pytest.mark.parametrize("n_channels,image_size", [(1, 16), (3, 16), (1, 32)])
def test_occlusion_is_a_zero_square_of_half_side(n_channels, image_size):
    X = make_digits_shift("occlusion", n_channels=n_channels, image_size=image_size,
                          random_state=2).data
    clean, _, _, _ = _target_clean(image_size, n_channels)
    side = image_size // 2
    n_pos = image_size - side + 1
    zero = (X == 0.0).all(1)                # (N, S, S)
    changed = (X != clean).any(1)           # (N, S, S)

    def window_sums(m):                     # sums over every side x side window
        c = np.pad(m.astype(np.int64).cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
        return (c[:, side:, side:] - c[:, :-side, side:]
                - c[:, side:, :-side] + c[:, :-side, :-side])

    full_zero = window_sums(zero) == side * side
    holds_all_changes = window_sums(changed) == changed.sum((1, 2))[:, None, None]
    ok = full_zero & holds_all_changes      # (N, n_pos, n_pos)
    found = np.where(ok.any((1, 2)), ok.reshape(len(X), -1).argmax(1), -1)
    # Every image is its clean version with exactly one side x side square
    # zeroed (a smaller square would leave digit pixels inside, a larger one
    # would change pixels outside).
    assert (found >= 0).all()
    assert len(np.unique(found)) > min(30, n_pos ** 2 // 2)  # random positions


# --------------------------------------------------------------------------
# Geometric shifts
# --------------------------------------------------------------------------

def test_rotation_by_90_is_rot90(clean_grey):
    for angle, k in ((90, 1), (-90, -1), (180, 2)):
        X = make_digits_shift("rotation", angle=angle).data
        np.testing.assert_allclose(X, np.rot90(clean_grey, k=k, axes=(-2, -1)), atol=1e-5)


def test_default_rotation_preserves_the_digit(clean_grey):
    angle = SHIFT_DEFAULTS["rotation"]["angle"]
    X = make_digits_shift("rotation").data.astype(np.float64)
    # Rotating back approximately restores the image (bilinear blur aside).
    from scipy import ndimage
    back = ndimage.rotate(X, -angle, axes=(-1, -2), reshape=False, order=1)
    err = np.abs(back - clean_grey).mean()
    assert err < 0.5 * np.abs(X - clean_grey).mean()


def test_scaling_pads_with_background(clean_grey, clean_colour):
    for scale in (0.5, SHIFT_DEFAULTS["scaling"]["scale"]):
        X = make_digits_shift("scaling", scale=scale).data.astype(np.float64)
        c = (S - 1) / 2
        outside = np.abs(np.arange(S) - c) >= scale * (c + 1)
        assert outside.any()
        assert (X[:, :, outside, :] == 0).all() and (X[:, :, :, outside] == 0).all()
        ratio = X.sum() / clean_grey.sum()
        assert abs(ratio - scale ** 2) < 0.1 * scale ** 2
    # In colour, the padding is each digit's background colour.
    Xc = make_digits_shift("scaling", scale=0.5, n_channels=3).data
    corner_bg = clean_grey[:, 0, 0, 0] == 0.0
    ring = Xc[corner_bg][:, :, :2, :]
    np.testing.assert_allclose(ring, np.broadcast_to(clean_colour[corner_bg][:, :, :1, :1],
                                                     ring.shape), atol=1e-6)


def test_fixed_affine_conventions(clean_grey):
    identity = dict(rotation=0.0, shear=0.0, scale=1.0)
    X = make_digits_shift("fixed_affine", translate=(0.25, 0.0), **identity).data
    np.testing.assert_allclose(X[..., 4:], clean_grey[..., :-4], atol=1e-6)
    assert (X[..., :4] == 0).all()
    X = make_digits_shift("fixed_affine", translate=(0.0, 0.25), **identity).data
    np.testing.assert_allclose(X[..., 4:, :], clean_grey[..., :-4, :], atol=1e-6)
    X = make_digits_shift("fixed_affine", rotation=90.0, shear=0.0, scale=1.0).data
    np.testing.assert_allclose(X, np.rot90(clean_grey, axes=(-2, -1)), atol=1e-5)
    # Horizontal squeeze: columns outside the centre half are empty, rows are not.
    X = make_digits_shift("fixed_affine", rotation=0.0, shear=0.0, scale=(0.5, 1.0)).data
    assert (X[..., :4] == 0).all() and (X[..., 12:] == 0).all()
    assert X[..., :4, :].max() > 0.5
    # Shear: x' = x + tan(shear) y moves the bottom of the digit right.
    X = make_digits_shift("fixed_affine", rotation=0.0, shear=30.0, scale=1.0).data
    cols = np.arange(S)

    def col_centroid(Y, rows):
        m = Y[:, 0, rows].sum(1)
        return (m * cols).sum(1) / np.maximum(m.sum(1), 1e-9)
    top, bottom = slice(0, 6), slice(10, 16)
    shift_bottom = col_centroid(X, bottom) - col_centroid(clean_grey, bottom)
    shift_top = col_centroid(X, top) - col_centroid(clean_grey, top)
    assert np.median(shift_bottom) > 1.0 and np.median(shift_top) < -1.0


def test_random_affine_identity_and_per_image_randomness(clean_grey):
    X = make_digits_shift("random_affine", rotation=0, shear=0, scale=(1, 1),
                          translate=0.0).data
    np.testing.assert_allclose(X, clean_grey, atol=1e-6)
    X = make_digits_shift("random_affine", rotation=(90, 90), shear=0, scale=(1, 1),
                          translate=0.0).data
    np.testing.assert_allclose(X, np.rot90(clean_grey, axes=(-2, -1)), atol=1e-5)
    # Pure random translations: each image moves by its own amount, bounded
    # by translate * image_size per axis.
    t = 0.12
    X = make_digits_shift("random_affine", rotation=0, shear=0, scale=(1, 1), translate=t,
                          random_state=4).data.astype(np.float64)

    def centroid(Y):
        m = Y[:, 0]
        grid = np.arange(S)
        tot = m.sum((1, 2))
        return ((m.sum(1) * grid).sum(1) / tot, (m.sum(2) * grid).sum(1) / tot)

    dx = centroid(X)[0] - centroid(clean_grey)[0]
    dy = centroid(X)[1] - centroid(clean_grey)[1]
    assert np.abs(dx).max() <= t * S + 1.0 and np.abs(dy).max() <= t * S + 1.0
    assert dx.std() > 0.5 and dy.std() > 0.5
    assert abs(np.corrcoef(dx, dy)[0, 1]) < 0.2
    # Random scales change the ink mass image by image.
    X = make_digits_shift("random_affine", rotation=0, shear=0, scale=(0.6, 1.0),
                          translate=0.0).data.astype(np.float64)
    mass = X.sum((1, 2, 3)) / clean_grey.sum((1, 2, 3))
    assert mass.min() > 0.3 and mass.max() < 1.1 and mass.std() > 0.05


# --------------------------------------------------------------------------
# Colour and appearance shifts
# --------------------------------------------------------------------------

@pytest.mark.parametrize("n_channels", [1, 3])
def test_invert_is_the_negative(n_channels, clean_grey, clean_colour):
    X = make_digits_shift("invert", n_channels=n_channels).data
    np.testing.assert_allclose(X, 1.0 - _clean(clean_grey, clean_colour, n_channels),
                               atol=1e-6)


def test_colorspace_yuv(clean_colour):
    X = make_digits_shift("colorspace", space="yuv").data.astype(np.float64)
    r, g, b = clean_colour[:, 0], clean_colour[:, 1], clean_colour[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = 0.492 * (b - y)
    v = 0.877 * (r - y)
    np.testing.assert_allclose(X[:, 0], y, atol=1e-5)
    np.testing.assert_allclose(X[:, 1], u / 0.872 + 0.5, atol=2e-3)
    np.testing.assert_allclose(X[:, 2], v / 1.23 + 0.5, atol=2e-3)


def test_colorspace_hsv_matches_colorsys(clean_colour):
    X = make_digits_shift("colorspace", space="hsv").data.astype(np.float64)
    rng = np.random.RandomState(0)
    picks = zip(rng.randint(len(X), size=400), rng.randint(S, size=400),
                rng.randint(S, size=400))
    for n, i, j in picks:
        h, s, v = colorsys.rgb_to_hsv(*clean_colour[n, :, i, j])
        dh = abs(X[n, 0, i, j] - h)
        assert min(dh, 1 - dh) < 1e-5
        assert abs(X[n, 1, i, j] - s) < 1e-5 and abs(X[n, 2, i, j] - v) < 1e-5


def test_mnistm_blends_with_photos(clean_grey, clean_colour):
    b = make_digits_shift("mnistm")
    X = b.data.astype(np.float64)
    assert X.shape[1] == 3
    # Background pixels carry photo texture: not constant within an image,
    # unlike the clean colour target whose background is one colour.
    bg = np.broadcast_to(clean_grey == 0.0, X.shape)
    spread = np.array([X[n][bg[n]].reshape(3, -1).std(1).max() for n in range(len(X))])
    assert np.median(spread) > 0.02
    # out = |patch - x|: some patch value in [0, 1] explains every pixel.
    lo, hi = clean_colour - X, clean_colour + X
    ok = ((lo >= -1e-5) & (lo <= 1 + 1e-5)) | ((hi >= -1e-5) & (hi <= 1 + 1e-5))
    assert ok.all()
    # Patches come from different places of the photos.
    assert len(np.unique(X[:, :, 0, 0].round(4), axis=0)) > 0.9 * len(X)
    # Larger crops are resized to the output size.
    big = make_digits_shift("mnistm", patch_size=64, split="val")
    assert big.data.shape == (200, 3, S, S) and big.params["patch_size"] == 64


def test_other_image_sizes():
    for shift in ("blur", "rotation", "mnistm", "colorspace"):
        X = make_digits_shift(shift, image_size=28, split="val").data
        assert X.shape[-2:] == (28, 28) and X.dtype == np.float32
        assert 0.0 <= X.min() and X.max() <= 1.0


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

def test_errors():
    with pytest.raises(ValueError, match="'shift' parameter.*blur.*Got 'fog'"):
        make_digits_shift("fog")
    with pytest.raises(ValueError, match=r"Unknown parameter.*'radius'.*valid.*sigma"):
        make_digits_shift("blur", radius=2)
    with pytest.raises(ValueError, match="Unknown parameter"):
        make_digits_shift("invert", std=0.1)
    with pytest.raises(ValueError, match="'split' parameter.*Got 'validation'"):
        make_digits_shift("blur", split="validation")
    with pytest.raises(ValueError, match="'n_channels' parameter.*Got 2"):
        make_digits_shift("blur", n_channels=2)
    with pytest.raises(ValueError, match="colour shift.*n_channels=3"):
        make_digits_shift("mnistm", n_channels=1)
    with pytest.raises(ValueError, match="colour shift"):
        make_digits_shift("colorspace", n_channels=1)
    with pytest.raises(ValueError, match="image_size"):
        make_digits_shift("blur", image_size=4)
    with pytest.raises(ValueError, match="sigma"):
        make_digits_shift("blur", sigma=-1.0)
    with pytest.raises(ValueError, match="space"):
        make_digits_shift("colorspace", space="lab")
    with pytest.raises(ValueError, match="scale"):
        make_digits_shift("scaling", scale=0)
    with pytest.raises(ValueError, match="rotation"):
        make_digits_shift("random_affine", rotation=(10, -10))
    with pytest.raises(ValueError, match="size"):
        make_digits_shift("occlusion", size=1.5)
    with pytest.raises(ValueError, match="'split' parameter.*Got 'val'"):
        load_digits_source(split="val")
    with pytest.raises(ValueError, match="n_channels"):
        load_digits_source(n_channels=2)


# --------------------------------------------------------------------------
# Subsampling
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def y_pool():
    return make_digits_shift("invert", split="train").target


@pytest.mark.parametrize("random_state", [0, 1, 7])
def test_subsample_nested_and_exact(y_pool, random_state):
    subsets = {n: subsample_per_class(y_pool, n, random_state=random_state)
               for n in (2, 10, 40)}
    for n, idx in subsets.items():
        assert idx.dtype.kind == "i"
        assert (np.diff(idx) > 0).all()  # sorted, no repeats
        np.testing.assert_array_equal(np.bincount(y_pool[idx], minlength=10), np.full(10, n))
    assert np.isin(subsets[2], subsets[10]).all()
    assert np.isin(subsets[10], subsets[40]).all()
    np.testing.assert_array_equal(subsets[40], np.arange(len(y_pool)))


def test_subsample_repeats_differ_and_cover(y_pool):
    a = subsample_per_class(y_pool, 10, random_state=0)
    np.testing.assert_array_equal(a, subsample_per_class(y_pool, 10, random_state=0))
    assert not np.array_equal(a, subsample_per_class(y_pool, 10, random_state=1))
    counts = np.zeros(len(y_pool))
    for seed in range(300):
        counts[subsample_per_class(y_pool, 2, random_state=seed)] += 1
    # Each image is drawn with probability 2 / 40 per repeat (15 times on average).
    assert counts.min() >= 1 and counts.max() <= 40


def test_subsample_labels_and_errors():
    y = np.array(["b", "a", "b", "c", "a", "c", "c"])
    idx = subsample_per_class(y, 2, random_state=0)
    assert sorted(y[idx]) == ["a", "a", "b", "b", "c", "c"]
    with pytest.raises(ValueError, match=r"fewer.*'a': 2"):
        subsample_per_class(y, 3, random_state=0)
    with pytest.raises(ValueError, match="'n_per_class' parameter.*range \\[1, inf\\)"):
        subsample_per_class(y, 0)
    with pytest.raises(ValueError, match="'n_per_class' parameter.*range \\[1, inf\\)"):
        subsample_per_class(y, 1.5)


def test_more_errors_name_the_cause():
    with pytest.raises(ValueError, match="image_size <= 427"):
        make_digits_shift("mnistm", image_size=1000)
    with pytest.raises(ValueError, match="'split' parameter.*Got \\['train'\\]"):
        make_digits_shift("blur", split=["train"])
    with pytest.raises(ValueError, match="'split' parameter.*Got \\['train'\\]"):
        load_digits_source(split=["train"])
    with pytest.raises(ValueError, match="y is empty"):
        subsample_per_class(np.array([]), 2)


# --------------------------------------------------------------------------
# The whole split, and the shared names
# --------------------------------------------------------------------------

def test_colour_shifts():
    assert PUBLIC_COLOUR_SHIFTS == COLOUR_SHIFTS
    for shift in SHIFTS:
        n_channels = make_digits_shift(shift, split="val", image_size=8).data.shape[1]
        assert n_channels == (3 if shift in PUBLIC_COLOUR_SHIFTS else 1)


@pytest.mark.parametrize("random_state", [0, 3])
def test_train_val_test_split_is_the_protocol(random_state):
    bunch = make_digits_shift("noise", image_size=8, random_state=0)
    X, y, split = bunch.data, bunch.target, bunch.split
    # The idiom it replaces, written out.
    pool = np.flatnonzero(split == "train")
    subsets = {}
    for n in (2, 10, 40):
        X_train, y_train, X_val, y_val, X_test, y_test = train_val_test_split(
            bunch, n, random_state=random_state)
        train = pool[subsample_per_class(y[pool], n, random_state=random_state)]
        np.testing.assert_array_equal(X_train, X[train])
        np.testing.assert_array_equal(y_train, y[train])
        np.testing.assert_array_equal(X_val, X[split == "val"])
        np.testing.assert_array_equal(y_test, y[split == "test"])
        assert np.bincount(y_train).tolist() == [n] * N_CLASSES
        assert (len(y_val), len(y_test)) == (200, 340)
        subsets[n] = {X_train[i].tobytes() for i in range(len(X_train))}
    assert subsets[2] <= subsets[10] <= subsets[40]  # nested across sizes


def test_train_val_test_split_errors():
    bunch = make_digits_shift("blur", image_size=8)
    with pytest.raises(ValueError, match="no 'val', 'test' rows.*split='all'"):
        train_val_test_split(make_digits_shift("blur", split="train", image_size=8), 2)
    with pytest.raises(ValueError, match="no split"):
        train_val_test_split({"data": bunch.data, "target": bunch.target}, 2)
    with pytest.raises(ValueError, match="fewer"):
        train_val_test_split(bunch, 41)
    with pytest.raises(ValueError, match="'n_per_class' parameter"):
        train_val_test_split(bunch, 0)
    with pytest.raises(ValueError, match="'bunch' parameter"):
        train_val_test_split(bunch.data, 2)


def test_bools_are_not_integers():
    with pytest.raises(ValueError, match="not a bool"):
        subsample_per_class(np.repeat([0, 1], 3), True)
    with pytest.raises(ValueError, match="not a bool"):
        make_digits_shift("blur", n_channels=True)
    with pytest.raises(ValueError, match="not a bool"):
        load_digits_source(n_channels=True)
