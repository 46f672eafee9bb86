"""Tests for flexsk.zoo: unit structure, deterministic pretraining, the cache."""

import os
import time
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from flexsk import zoo
from flexsk.datasets import load_digits_source
from flexsk.zoo import ARCHS, get_cache_dir, load_source_net, make_net

UNITS = {
    "conv4": ["conv1", "conv2", "fc1", "fc2"],
    "conv7": ["conv1", "conv2", "conv3", "conv4", "conv5", "fc1", "fc2"],
}

# Cheapest source net (well under a second to pretrain): used by the
# unmarked tests below.
CHEAP = dict(arch="conv4", n_channels=1, image_size=8)


def _cache_file(cache_dir, arch="conv4", n_channels=1, image_size=8):
    return cache_dir / (f"{arch}-c{n_channels}-s{image_size}-v{zoo.ZOO_VERSION}-"
                        f"{zoo._recipe_tag()}.pt")


def _assert_state_dicts_equal(a, b):
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _forbid_pretraining(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("pretraining should not run: the cache must be used")
    monkeypatch.setattr(zoo, "_pretrain", fail)


@pytest.fixture(scope="module")
def cheap_cache(tmp_path_factory):
    """A cache directory holding the pretrained cheap net."""
    cache_dir = tmp_path_factory.mktemp("zoo-cache")
    load_source_net(**CHEAP, cache_dir=cache_dir)
    return cache_dir


# --------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------

def test_archs():
    assert ARCHS == ("conv4", "conv7")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("n_channels", [1, 3])
@pytest.mark.parametrize("image_size", [8, 16, 24])
def test_unit_structure_and_output_shape(arch, n_channels, image_size):
    net = make_net(arch, n_channels=n_channels, image_size=image_size)
    assert isinstance(net, torch.nn.Sequential)
    children = list(net.named_children())
    with_params = [name for name, child in children if any(True for _ in child.parameters())]
    assert with_params == UNITS[arch]
    for name, child in children:
        if name not in UNITS[arch]:
            assert sum(p.numel() for p in child.parameters()) == 0
    assert [name for name, _ in children if name not in UNITS[arch]] == ["flatten"]
    # Every parameter belongs to exactly one unit.
    assert {n.split(".")[0] for n, _ in net.named_parameters()} == set(UNITS[arch])
    # BatchNorm exactly in the conv units of conv7.
    for name, child in children:
        has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in child.modules())
        assert has_bn == (arch == "conv7" and name.startswith("conv"))
    # The forward pass is the chain of children; logits of shape (N, 10).
    x = torch.rand(3, n_channels, image_size, image_size)
    net.eval()
    out = net(x)
    assert out.shape == (3, 10)
    h = x
    for child in net.children():
        h = child(h)
    assert torch.equal(h, out)


def test_make_net_n_classes_and_fresh_init():
    a, b = make_net("conv4", n_classes=5), make_net("conv4", n_classes=5)
    assert a(torch.rand(2, 1, 16, 16)).shape == (2, 5)
    assert not torch.equal(a.conv1[0].weight, b.conv1[0].weight)


@pytest.mark.parametrize("kwargs", [
    dict(arch="resnet"),
    dict(arch="conv4", image_size=12),
    dict(arch="conv4", image_size=0),
    dict(arch="conv4", image_size=16.0),
    dict(arch="conv4", n_channels=0),
    dict(arch="conv4", n_channels=True),
    dict(arch="conv4", n_classes=1),
])
def test_make_net_invalid_args(kwargs):
    with pytest.raises(ValueError):
        make_net(**kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(arch="vgg"), dict(n_channels=2), dict(image_size=20), dict(image_size=4),
])
def test_load_source_net_invalid_args(kwargs, tmp_path):
    with pytest.raises(ValueError):
        load_source_net(**kwargs, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------
# Cache directory
# --------------------------------------------------------------------------

def test_get_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FLEXSK_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert get_cache_dir() == tmp_path / "a"
    monkeypatch.setenv("FLEXSK_CACHE_DIR", "")
    assert get_cache_dir() == tmp_path / "xdg" / "flexsk"
    monkeypatch.delenv("FLEXSK_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert get_cache_dir() == tmp_path / "home" / ".cache" / "flexsk"
    assert not (tmp_path / "home").exists()  # not created


def test_flexsk_cache_dir_env_respected(monkeypatch, tmp_path, cheap_cache):
    monkeypatch.setenv("FLEXSK_CACHE_DIR", str(cheap_cache))
    _forbid_pretraining(monkeypatch)
    net = load_source_net(**CHEAP)  # found in the env's directory: no training
    _assert_state_dicts_equal(net.module_.state_dict(),
                              torch.load(_cache_file(cheap_cache), weights_only=True))
    monkeypatch.undo()
    monkeypatch.setenv("FLEXSK_CACHE_DIR", str(tmp_path / "env"))
    load_source_net(**CHEAP)
    assert [p.name for p in (tmp_path / "env").iterdir()] == [_cache_file(tmp_path).name]


# --------------------------------------------------------------------------
# Pretraining and the cache
# --------------------------------------------------------------------------

def test_pretraining_deterministic_and_rng_untouched(tmp_path, capsys):
    torch.manual_seed(123)
    rng_state = torch.get_rng_state()
    n_threads = torch.get_num_threads()
    a = load_source_net(**CHEAP, cache_dir=tmp_path / "a", refit=True, verbose=1)
    b = load_source_net(**CHEAP, cache_dir=tmp_path / "b", refit=True)
    load_source_net(**CHEAP, cache_dir=tmp_path / "b")  # from the cache
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert torch.get_num_threads() == n_threads
    _assert_state_dicts_equal(a.module_.state_dict(), b.module_.state_dict())
    _assert_state_dicts_equal(torch.load(_cache_file(tmp_path / "a"), weights_only=True),
                              torch.load(_cache_file(tmp_path / "b"), weights_only=True))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1  # verbose=1 only; one line
    assert "conv4" in out[0] and "30 epochs" in out[0] and "accuracy" in out[0]


def test_private_pretrain_deterministic():
    a = zoo._pretrain("conv7", 3, 8, epochs=1)
    b = zoo._pretrain("conv7", 3, 8, epochs=1)
    _assert_state_dicts_equal(a, b)
    assert any("running_mean" in k for k in a)  # BatchNorm buffers included


def test_cache_used_on_second_call(monkeypatch, cheap_cache):
    path = _cache_file(cheap_cache)
    mtime = path.stat().st_mtime_ns
    _forbid_pretraining(monkeypatch)
    net = load_source_net(**CHEAP, cache_dir=cheap_cache)
    assert path.stat().st_mtime_ns == mtime
    # Atomic writes leave no temporary file behind.
    assert [p.name for p in cheap_cache.iterdir()] == [path.name]
    # The cached weights load with weights_only=True and are the module's.
    cached = torch.load(path, map_location="cpu", weights_only=True)
    _assert_state_dicts_equal(net.module_.state_dict(), cached)


def test_refit_overwrites_cache(tmp_path, monkeypatch):
    load_source_net(**CHEAP, cache_dir=tmp_path)
    path = _cache_file(tmp_path)
    calls = []
    original = zoo._pretrain
    monkeypatch.setattr(zoo, "_pretrain", lambda *a, **k: calls.append(1) or original(*a, **k))
    old = path.stat().st_mtime_ns
    time.sleep(0.01)
    load_source_net(**CHEAP, cache_dir=tmp_path, refit=True)
    assert calls == [1]
    assert path.stat().st_mtime_ns != old


@pytest.mark.parametrize("content", [b"not a torch file", b""])
def test_corrupt_cache_retrains_with_warning(tmp_path, cheap_cache, content):
    path = _cache_file(tmp_path)
    path.write_bytes(content)
    with pytest.warns(RuntimeWarning, match="retraining"):
        net = load_source_net(**CHEAP, cache_dir=tmp_path)
    reference = torch.load(_cache_file(cheap_cache), weights_only=True)
    _assert_state_dicts_equal(torch.load(path, weights_only=True), reference)
    _assert_state_dicts_equal(net.module_.state_dict(), reference)


def test_mismatched_cache_retrains_with_warning(tmp_path):
    path = _cache_file(tmp_path)
    torch.save(make_net("conv4", image_size=16).state_dict(), path)  # wrong shapes
    with pytest.warns(RuntimeWarning, match="retraining"):
        load_source_net(**CHEAP, cache_dir=tmp_path)
    make_net(**CHEAP).load_state_dict(torch.load(path, weights_only=True))


def test_unwritable_cache_warns_and_keeps_weights(tmp_path, monkeypatch, cheap_cache):
    monkeypatch.setattr(zoo, "_UNSAVED", {})
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.warns(RuntimeWarning, match="in memory"):
        net = load_source_net(**CHEAP, cache_dir=blocker / "sub")
    _forbid_pretraining(monkeypatch)
    net.initialize()  # re-initialization uses the in-memory weights
    _assert_state_dicts_equal(net.module_.state_dict(),
                              torch.load(_cache_file(cheap_cache), weights_only=True))


# --------------------------------------------------------------------------
# The returned estimator
# --------------------------------------------------------------------------

def test_returned_net_configuration(cheap_cache):
    net = load_source_net(**CHEAP, cache_dir=cheap_cache)
    assert net.initialized_
    assert isinstance(net.optimizer_, torch.optim.Adam)
    assert net.optimizer is torch.optim.Adam
    assert net.lr == 1e-3
    assert net.optimizer_.param_groups[0]["lr"] == 1e-3
    assert isinstance(net.criterion_, torch.nn.CrossEntropyLoss)
    assert net.train_split is None
    assert net.batch_size == 32
    assert net.iterator_train__shuffle is True
    assert net.device == "cpu"
    assert list(net.classes_) == list(range(10))
    assert [n for n, c in net.module_.named_children() if list(c.parameters())] == UNITS["conv4"]


def test_source_accuracy_and_reinit_restores_pretrained(cheap_cache, monkeypatch):
    net = load_source_net(**CHEAP, cache_dir=cheap_cache)
    X, y = load_digits_source(split="test", image_size=8, return_X_y=True)
    assert net.score(X, y) >= 0.9
    pretrained = {k: v.clone() for k, v in net.module_.state_dict().items()}
    _forbid_pretraining(monkeypatch)
    # Fine-tuning changes the weights; clone + initialize and a new fit start
    # from the pretrained weights again.
    torch.manual_seed(0)
    net.set_params(max_epochs=1)
    net.fit(X[:64], y[:64])
    assert not torch.equal(net.module_.fc2.weight, pretrained["fc2.weight"])
    _assert_state_dicts_equal(clone(net).initialize().module_.state_dict(), pretrained)
    net.initialize()
    _assert_state_dicts_equal(net.module_.state_dict(), pretrained)
    assert np.all(net.predict(X[:5]) < 10)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("n_channels", [1, 3])
def test_source_accuracy_16px(arch, n_channels, tmp_path):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = load_source_net(arch, n_channels=n_channels, image_size=16, cache_dir=tmp_path)
    elapsed = time.perf_counter() - start
    X, y = load_digits_source(split="test", image_size=16, n_channels=n_channels,
                              return_X_y=True)
    assert net.score(X, y) >= 0.93
    assert elapsed < 60  # ~3 s each on 2 idle cores; generous for busy machines
    assert os.path.exists(_cache_file(tmp_path, arch, n_channels, 16))


def test_cache_name_changes_with_the_recipe(monkeypatch):
    before = zoo._recipe_tag()
    monkeypatch.setitem(zoo._PRETRAIN_EPOCHS, "conv7", zoo._PRETRAIN_EPOCHS["conv7"] + 1)
    assert zoo._recipe_tag() != before


def test_cache_file_has_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        load_source_net(**CHEAP, cache_dir=tmp_path, refit=True)
    finally:
        os.umask(old)
    (weights,) = tmp_path.glob("*.pt")
    assert weights.stat().st_mode & 0o777 == 0o644  # readable by others sharing the cache
    assert not list(tmp_path.glob("*.tmp"))


# --------------------------------------------------------------------------
# Integrity of the cache
# --------------------------------------------------------------------------

def _cached(cache_dir):
    return torch.load(_cache_file(cache_dir), weights_only=True)


def test_cache_file_carries_its_digest(cheap_cache):
    cached = _cached(cheap_cache)
    assert getattr(cached, zoo._DIGEST) == zoo._digest(cached)


@pytest.mark.parametrize("fill", [0.0, float("nan")])
def test_valid_torch_file_of_bad_weights_is_retrained(tmp_path, cheap_cache, fill):
    reference = _cached(cheap_cache)
    torch.save({k: torch.full_like(v, fill) if v.is_floating_point() else v
                for k, v in reference.items()}, _cache_file(tmp_path))
    with pytest.warns(RuntimeWarning, match="no SHA-256 digest.*retraining"):
        net = load_source_net(**CHEAP, cache_dir=tmp_path)
    _assert_state_dicts_equal(net.module_.state_dict(), reference)
    _assert_state_dicts_equal(_cached(tmp_path), reference)


def test_weights_that_do_not_match_their_digest_are_retrained(tmp_path, cheap_cache):
    damaged = _cached(cheap_cache)  # keeps its digest
    damaged["fc2.weight"][0, 0] += 1.0
    torch.save(damaged, _cache_file(tmp_path))
    with pytest.warns(RuntimeWarning, match="do not match their SHA-256 digest"):
        net = load_source_net(**CHEAP, cache_dir=tmp_path)
    _assert_state_dicts_equal(net.module_.state_dict(), _cached(cheap_cache))


def test_non_finite_weights_are_retrained(tmp_path, cheap_cache):
    from collections import OrderedDict

    damaged = OrderedDict(_cached(cheap_cache))
    damaged["fc1.0.bias"][3] = float("nan")
    setattr(damaged, zoo._DIGEST, zoo._digest(damaged))  # a digest that matches
    torch.save(damaged, _cache_file(tmp_path))
    with pytest.warns(RuntimeWarning, match=r"non-finite weights in \['fc1.0.bias'\]"):
        net = load_source_net(**CHEAP, cache_dir=tmp_path)
    _assert_state_dicts_equal(net.module_.state_dict(), _cached(cheap_cache))


def test_damaged_file_in_a_read_only_cache_is_retrained_once(tmp_path, cheap_cache,
                                                             monkeypatch):
    monkeypatch.setattr(zoo, "_UNSAVED", {})
    _cache_file(tmp_path).write_bytes(b"damaged")

    def read_only(state_dict, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(zoo, "_save_atomic", read_only)
    with pytest.warns(RuntimeWarning) as record:
        net = load_source_net(**CHEAP, cache_dir=tmp_path)
    assert ["retraining" in str(w.message) or "in memory" in str(w.message)
            for w in record] == [True, True]
    _forbid_pretraining(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.initialize()  # re-initialization: the rebuilt weights, no retraining
        clone(net).initialize()
        load_source_net(**CHEAP, cache_dir=tmp_path)
    _assert_state_dicts_equal(net.module_.state_dict(), _cached(cheap_cache))
    assert _cache_file(tmp_path).read_bytes() == b"damaged"
