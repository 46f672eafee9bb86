"""Precision and memory-format options, and CUDA (tests marked cuda run only on a GPU)."""

import numpy as np
import pytest
import torch

from flexsk import FlexTuner

SETTINGS = dict(max_epochs=3, patience=2, random_state=0)


def fit(net, target, **params):
    return FlexTuner(net, **{**SETTINGS, **params}).fit(
        target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])


@pytest.mark.parametrize("params", [dict(channels_last=True), dict(precision="bfloat16")])
def test_speed_options_give_a_working_fit(conv7, target, params):
    tuner = fit(conv7, target, strategy="fast", **params)
    reference = fit(conv7, target, strategy="fast")
    proba = tuner.predict_proba(target["X_test"])
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-3)
    if "channels_last" in params:  # same arithmetic up to rounding
        assert tuner.selected_unit_ == reference.selected_unit_
        np.testing.assert_allclose(proba, reference.predict_proba(target["X_test"]), atol=0.05)
    accuracy = tuner.score(target["X_test"], target["y_test"])
    assert abs(accuracy - reference.score(target["X_test"], target["y_test"])) < 0.05


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
    from flexsk._training import FineTuning

    devices = []
    original = FineTuning.cached_inputs

    def spy(self, name):
        inputs = original(self, name)
        devices.extend(t.device.type for t in inputs)
        return inputs

    monkeypatch.setattr(FineTuning, "cached_inputs", spy)
    gpu_net = conv7.set_params(device="cuda")
    gpu_net.initialize()
    fit(gpu_net, target, strategy="ft-fc")
    assert devices and set(devices) == {"cuda"}
