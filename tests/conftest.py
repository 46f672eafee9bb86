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


#: A pick is asserted across numerically different paths (memory format, precision,
#: thread counts, torch versions) only when the reference's winner leads the runner-up
#: by at least this many validation samples; closer races may cross with rounding.
CLEAR_MARGIN_SAMPLES = 2


def clear_lead(scores, n_val, margin=CLEAR_MARGIN_SAMPLES):
    """Whether the best of ``scores`` (accuracies on ``n_val`` samples) leads the rest by
    at least ``margin`` samples. Ties broken by a secondary key (loss, order) never count."""
    ranked = sorted(scores.values(), reverse=True)
    if len(ranked) < 2:
        return True
    return (ranked[0] - ranked[1]) * n_val >= margin - 1e-9


def pick_is_clear(tuner, n_val, margin=CLEAR_MARGIN_SAMPLES):
    """Whether every comparison that decided ``tuner``'s pick was won by a clear lead.

    Proxy scores decide the unit (fast, faster, flex); validation scores decide between
    the candidates trained on the way (flex's L + 1, fast's unit against ft-all).
    """
    decisions = [scores for scores in (tuner.proxy_scores_, tuner.validation_scores_)
                 if len(scores) > 1]
    return all(clear_lead(scores, n_val, margin) for scores in decisions)


def assert_same_pick_if_clear(tuner, reference, n_val, margin=CLEAR_MARGIN_SAMPLES):
    """Assert the same pick as ``reference`` when its pick was clear; report whether it was.

    The rule for comparing picks across numerically different paths: the design
    guarantees nothing when candidates are within rounding of each other.
    """
    if not pick_is_clear(reference, n_val, margin):
        return False
    assert tuner.selected_unit_ == reference.selected_unit_
    return True


def state_hash(module):
    """A hash of every parameter and buffer of a module."""
    digest = hashlib.sha256()
    for key, value in module.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def refitted(fit):
    """``fit()``'s tuner, after checking that its refit ran.

    A refit is returned (``refit_epochs_`` set), or it failed the check against
    the selection run's model, which is returned with a SelectionWarning saying
    so: which of the two depends on rounding, so tests accept either.
    """
    import warnings

    from flexsk import SelectionWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuner = fit()
    fell_back = any(issubclass(w.category, SelectionWarning) and "The refit of" in
                    str(w.message) for w in caught)
    assert (tuner.refit_epochs_ is not None) != fell_back
    return tuner
