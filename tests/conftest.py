"""Shared fixtures. Session-scoped nets and data are never mutated by tests."""

import copy
import hashlib

import numpy as np
import pytest
import torch
from torch import nn

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


class Scripted:
    """Validation passes with scripted results, through FlexTuner's public hooks only.

    Each validation pass (epoch 0, the validated epochs, proxies, the refit's check)
    gets the next (score, loss) pair of ``evaluations``, then the last pair for good;
    a bare number is a score with the loss 1.0. Fit
    ``FlexTuner(scripted.net(net), scoring=scripted.score, ...)``:

    * ``score``, the scorer, is called once per validation pass, after its batches:
      it returns the pass's score, which ranks in place of the accuracy (and is what
      ``validation_scores_`` report), and moves the script on;
    * ``net(net)`` is a copy of ``net`` whose criterion is the true loss where
      gradients are taken (training) and the pass's scripted loss where none are
      (every validation pass);
    * ``keep_weights``, passed as ``on_epoch``, keeps the weights of every epoch of
      the selection runs in ``weights[candidate][epoch]``.

    The accuracies stay the real ones: a check that reads the accuracy itself (the
    chance-level warning) is not scripted by this.
    """

    def __init__(self, evaluations):
        self.evaluations = [e if isinstance(e, tuple) else (e, 1.0) for e in evaluations]
        self.n_passes = 0
        self.weights = {}

    def __deepcopy__(self, memo):
        return self  # one script, whichever copy of the net reads it

    @property
    def current(self):
        return self.evaluations[min(self.n_passes, len(self.evaluations) - 1)]

    def score(self, estimator, X, y):
        value = self.current[0]
        self.n_passes += 1
        return value

    def keep_weights(self, record):
        if not record.refit:
            self.weights.setdefault(record.candidate, {})[record.epoch] = copy.deepcopy(
                record.module.state_dict())

    def net(self, net):
        return copy.deepcopy(net).set_params(criterion=_ScriptedLoss(self))


class _ScriptedLoss(nn.CrossEntropyLoss):
    """Cross-entropy to train on; the script's loss in a pass without gradients."""

    def __init__(self, script):
        super().__init__()
        self.script = script

    def forward(self, outputs, y):
        if torch.is_grad_enabled():
            return super().forward(outputs, y)
        return torch.tensor(self.script.current[1], dtype=torch.float64)


class UnitCalls:
    """Which units of a net run in each training run's epochs, and on inputs on which
    device: forward hooks on the net's layers (the copies a fit trains keep them), read
    against FlexTuner's ``on_epoch`` records (pass ``on_epoch=unit_calls.on_epoch``).

    A run's epoch 0 is recorded after its set-up, which computes the cached inputs of
    its units, if any: a unit before the cut does not run again in the epochs that
    follow, and the first unit after it takes the cached inputs as they are stored."""

    def __init__(self, net):
        self.events = []
        for name, layer in net.module_.named_modules():
            if not any(True for _ in layer.children()) and any(
                    True for _ in layer.parameters(recurse=False)):
                layer.register_forward_hook(self._hook(name.split(".")[0]))

    def _hook(self, unit):
        def hook(module, args, output):
            device = args[0].device.type if args and torch.is_tensor(args[0]) else None
            self.events.append((unit, device))
        return hook

    def on_epoch(self, record):
        self.events.append(record)

    def runs(self, devices=False):
        """(candidate, refit, the units that ran in its epochs) for each run, in order;
        with ``devices``, (unit, the device type of its input) pairs in place of units."""
        runs, pending = [], set()
        for event in self.events:
            if isinstance(event, tuple):
                pending.add(event if devices else event[0])
            elif event.epoch == 0:
                runs.append((event.candidate, event.refit, set()))
                pending = set()
            else:
                runs[-1][2].update(pending)
                pending = set()
        return runs
