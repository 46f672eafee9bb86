"""Precision and memory-format options, and CUDA (tests marked cuda run only on a GPU)."""

import numpy as np
import pytest
import torch
from conftest import UnitCalls, assert_same_pick_if_clear

from flexsk import FlexTuner

SETTINGS = dict(max_epochs=3, patience=2, random_state=0)


def fit(net, target, **params):
    return FlexTuner(net, **{**SETTINGS, **params}).fit(
        target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])


#: Test accuracy of a numerically different path may differ from the reference's by this.
ACCURACY_TOLERANCE = 0.1


# the default is channels-last on a CPU: the other layout is the default one
@pytest.mark.parametrize("params", [dict(channels_last=False), dict(precision="bfloat16")])
def test_speed_options_give_a_working_fit(conv7, target, params):
    # Another memory format or precision rounds differently: the same pick is guaranteed
    # only when the reference's winner leads clearly, and the same model only then.
    tuner = fit(conv7, target, strategy="fast", **params)
    reference = fit(conv7, target, strategy="fast")
    proba = tuner.predict_proba(target["X_test"])
    assert proba.shape == (len(target["X_test"]), len(tuner.classes_))
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-3)
    assert tuner.selected_unit_ in tuner.units_ + ["all"]
    # bfloat16 rounds every forward pass to 8 bits of mantissa: its training runs part from
    # float32's within a few steps, and no margin of the reference's pick bounds that
    if "channels_last" in params and assert_same_pick_if_clear(tuner, reference,
                                                               len(target["y_val"])):
        # the same arithmetic up to rounding
        np.testing.assert_allclose(proba, reference.predict_proba(target["X_test"]), atol=0.05)
    accuracy = tuner.score(target["X_test"], target["y_test"])
    assert abs(accuracy - reference.score(target["X_test"], target["y_test"])) < \
        ACCURACY_TOLERANCE


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("strategy", ["flex", "fast", "faster", "ft-ss"])
def test_cuda_fit_matches_cpu_selection(conv7, target, strategy):
    cpu = fit(conv7, target, strategy=strategy)
    gpu_net = conv7.set_params(device="cuda")
    gpu_net.initialize()
    gpu = fit(gpu_net, target, strategy=strategy)
    assert next(gpu.net_.module_.parameters()).is_cuda
    proba = gpu.predict_proba(target["X_test"])
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    agreement = np.mean(gpu.predict(target["X_test"]) == cpu.predict(target["X_test"]))
    assert agreement > 0.9
    assert gpu.transform(target["X_test"]).shape == cpu.transform(target["X_test"]).shape


@pytest.mark.cuda
@cuda
def test_cuda_caches_live_on_the_device(conv7, target):
    gpu_net = conv7.set_params(device="cuda")
    gpu_net.initialize()
    seen = UnitCalls(gpu_net)
    fit(gpu_net, target, strategy="ft-fc", on_epoch=seen.on_epoch)
    # only fc2 ran in the epochs of its selection run and its refit: on the cached inputs,
    # which reach it as they are stored
    assert seen.runs(devices=True) == [("fc2", False, {("fc2", "cuda")}),
                                       ("fc2", True, {("fc2", "cuda")})]


class _Viewing(torch.nn.Module):
    """A user's net that flattens with .view, which the channels-last layout breaks."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.size(0), -1))


def _viewing_net():
    from skorch import NeuralNetClassifier

    torch.manual_seed(0)
    return NeuralNetClassifier(_Viewing(), criterion=torch.nn.CrossEntropyLoss,
                               optimizer=torch.optim.Adam, lr=1e-3).initialize()


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto picks the layout on a CPU")
def test_channels_last_auto_on_a_cpu_trains_and_predicts_images_in_it(conv7, target):
    tuner = fit(conv7, target, strategy="ft-fc")
    assert tuner.channels_last_
    kernels = [p for p in tuner.net_.module_.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    assert not fit(conv7, target, strategy="ft-fc", channels_last=False).channels_last_


def test_a_net_that_needs_the_default_layout_keeps_it(target):
    tuner = fit(_viewing_net(), target, strategy="ft-fc")
    assert not tuner.channels_last_
    assert tuner.score(target["X_test"], target["y_test"]) > 0.1
    with pytest.raises(ValueError, match="channels_last=True, but the network raises in it"):
        fit(_viewing_net(), target, strategy="ft-fc", channels_last=True)


def test_tabular_inputs_keep_the_default_layout(target):
    from skorch import NeuralNetClassifier

    net = NeuralNetClassifier(torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                                  torch.nn.Linear(32, 10)),
                              criterion=torch.nn.CrossEntropyLoss).initialize()
    X = target["X"].reshape(len(target["X"]), -1)
    X_val = target["X_val"].reshape(len(target["X_val"]), -1)
    tuner = FlexTuner(net, strategy="ft-fc", channels_last=True, **SETTINGS).fit(
        X, target["y"], X_val=X_val, y_val=target["y_val"])
    assert not tuner.channels_last_
