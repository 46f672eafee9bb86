"""Shared fixtures. Session-scoped nets and data are never mutated by tests."""

import hashlib

import numpy as np
import pytest
import torch

from flexsk.datasets import make_digits_shift, subsample_per_class
from flexsk.zoo import load_source_net

IMAGE_SIZE = 8  # the digits' native size: the fastest nets for tests


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("flexsk-cache")


@pytest.fixture(scope="session")
def _conv4(cache_dir):
    return load_source_net("conv4", image_size=IMAGE_SIZE, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def _conv7(cache_dir):
    return load_source_net("conv7", image_size=IMAGE_SIZE, cache_dir=cache_dir)


@pytest.fixture
def conv4(_conv4):
    """A pretrained 4-unit net (conv, conv, fc, fc); each test gets a fresh copy."""
    import copy
    return copy.deepcopy(_conv4)


@pytest.fixture
def conv7(_conv7):
    """A pretrained 7-unit net with BatchNorm; each test gets a fresh copy."""
    import copy
    return copy.deepcopy(_conv7)


@pytest.fixture(scope="session")
def target():
    """A noisy-digits target: 10 train images per class, fixed val and test sets."""
    bunch = make_digits_shift("noise", image_size=IMAGE_SIZE, random_state=0)
    train = np.flatnonzero(bunch.split == "train")
    train = train[subsample_per_class(bunch.target[train], 10, random_state=0)]
    val = np.flatnonzero(bunch.split == "val")
    test = np.flatnonzero(bunch.split == "test")
    X, y = bunch.data, bunch.target
    for array in (X, y):
        array.setflags(write=False)
    return dict(X=X[train], y=y[train], X_val=X[val], y_val=y[val], X_test=X[test],
                y_test=y[test])


def state_hash(module):
    """A hash of every parameter and buffer of a module."""
    digest = hashlib.sha256()
    for key, value in module.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
