"""Precision and memory-format options, and CUDA (tests marked cuda run only on a GPU)."""

import numpy as np
import pytest
import torch
from conftest import assert_same_pick_if_clear

from flexsk import FlexTuner

SETTINGS = dict(max_epochs=3, patience=2, random_state=0)


def fit(net, target, **params):
    return FlexTuner(net, **{**SETTINGS, **params}).fit(
        target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])


#: Test accuracy of a numerically different path may differ from the reference's by this.
ACCURACY_TOLERANCE = 0.1


@pytest.mark.parametrize("params", [dict(channels_last=True), dict(precision="bfloat16")])
def test_speed_options_give_a_working_fit(conv7, target, params):
    # Another memory format or precision rounds differently: the same pick is guaranteed
    # only when the reference's winner leads clearly, and the same model only then.
    tuner = fit(conv7, target, strategy="fast", **params)
    reference = fit(conv7, target, strategy="fast")
    proba = tuner.predict_proba(target["X_test"])
    assert proba.shape == (len(target["X_test"]), len(tuner.classes_))
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-3)
    assert tuner.selected_unit_ in tuner.units_ + ["all"]
    same_pick = assert_same_pick_if_clear(tuner, reference, len(target["y_val"]))
    if same_pick and "channels_last" in params:  # same arithmetic up to rounding
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
def test_cuda_caches_live_on_the_device(conv7, target, monkeypatch):
    from flexsk._training import ActivationCache

    devices = []
    original = ActivationCache.inputs

    def spy(self, name):
        inputs = original(self, name)
        devices.extend(t.device.type for t in inputs)
        return inputs

    monkeypatch.setattr(ActivationCache, "inputs", spy)
    gpu_net = conv7.set_params(device="cuda")
    gpu_net.initialize()
    fit(gpu_net, target, strategy="ft-fc")
    assert devices and set(devices) == {"cuda"}
