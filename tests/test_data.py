"""The practitioner's data and models: Datasets, augmentation, class names, Pipelines,
modern architectures as units, tuple outputs, callbacks, module parameters, memory."""

import copy
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
import sklearn
import torch
from archs import (ResNetLike, TinyViT, TorchvisionViT, TupleOutput, mobilenet_like)
from skorch import NeuralNetClassifier
from skorch.callbacks import EarlyStopping, LRScheduler
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from conftest import refitted

from flexsk import FlexTuner, preview_units
from flexsk._units import resolve_units

FAST = dict(max_epochs=3, patience=2, random_state=0)
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def as_dataset(X, y=None):
    X = torch.as_tensor(X)
    return TensorDataset(X) if y is None else TensorDataset(X, torch.as_tensor(y))


def small_net(module, **kwargs):
    torch.manual_seed(0)
    settings = dict(criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-2,
                    batch_size=16)
    return NeuralNetClassifier(module, **{**settings, **kwargs})


# -- torch Datasets -------------------------------------------------------------------------------


def test_a_dataset_fits_and_predicts_like_arrays(conv4, target):
    arrays = FlexTuner(conv4, strategy="fast", activation_cache=False, **FAST).fit(
        target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    tuner = FlexTuner(conv4, strategy="fast", activation_cache=False, **FAST).fit(
        as_dataset(target["X"], target["y"]), X_val=as_dataset(target["X_val"], target["y_val"]))
    # the same batches in the same order: the same arithmetic
    assert tuner.selected_unit_ == arrays.selected_unit_
    assert tuner.validation_scores_ == arrays.validation_scores_
    X_test, y_test = target["X_test"], target["y_test"]
    expected = arrays.predict_proba(X_test)
    np.testing.assert_array_equal(tuner.predict_proba(X_test), expected)
    np.testing.assert_array_equal(tuner.predict_proba(as_dataset(X_test)), expected)
    np.testing.assert_array_equal(tuner.predict(as_dataset(X_test, y_test)),
                                  arrays.predict(X_test))
    np.testing.assert_array_equal(tuner.transform(as_dataset(X_test)), arrays.transform(X_test))
    assert tuner.score(as_dataset(X_test, y_test)) == arrays.score(X_test, y_test)
    assert tuner.score(as_dataset(X_test), y_test) == arrays.score(X_test, y_test)


def test_dataset_with_the_internal_split_and_mixed_inputs(conv4, target):
    tuner = FlexTuner(conv4, strategy="ft-fc", **FAST).fit(as_dataset(target["X"], target["y"]))
    arrays = FlexTuner(conv4, strategy="ft-fc", **FAST).fit(target["X"], target["y"])
    assert tuner.validation_scores_ == pytest.approx(arrays.validation_scores_, abs=0.06)
    mixed = FlexTuner(conv4, strategy="ft-fc", **FAST).fit(
        as_dataset(target["X"], target["y"]), X_val=target["X_val"], y_val=target["y_val"])
    assert mixed.predict(target["X_test"]).shape == target["y_test"].shape


@pytest.mark.parametrize("call, message", [
    (lambda t, X, y: t.fit(as_dataset(X, y), y), "y must be None"),
    (lambda t, X, y: t.fit(as_dataset(X)), "yields inputs only"),
    (lambda t, X, y: t.fit(X, None), "requires y to be passed"),
    (lambda t, X, y: t.fit(X, y, X_val=as_dataset(X, y), y_val=y), "y_val must be None"),
    (lambda t, X, y: t.fit(as_dataset(X[:, :, :4], y)), "cannot take inputs of shape"),
])
def test_dataset_errors(conv4, target, call, message):
    with pytest.raises(ValueError, match=message):
        call(FlexTuner(conv4, **FAST), target["X"], target["y"])


class Counted(TensorDataset):
    """Counts the reads of each item."""

    def __init__(self, X, y):
        super().__init__(torch.as_tensor(X), torch.as_tensor(y))
        self.reads = np.zeros(len(X), dtype=int)

    def __getitem__(self, i):
        self.reads[i] += 1
        return super().__getitem__(i)


def test_refit_concatenates_the_training_and_validation_datasets(conv4, target):
    train, val = Counted(target["X"], target["y"]), Counted(target["X_val"], target["y_val"])
    refit = []  # the refit's epochs: steps so far, and the reads of each dataset so far

    def on_epoch(record):
        if record.refit:
            refit.append((record.epoch, record.n_steps, train.reads.copy(), val.reads.copy()))

    FlexTuner(conv4, strategy="ft-all", on_epoch=on_epoch, **FAST).fit(train, X_val=val)
    (_, _, train_before, val_before), *epochs = refit
    n_epochs, _, train_after, val_after = epochs[-1]
    assert [epoch for epoch, *_ in epochs] == list(range(1, n_epochs + 1)) and n_epochs >= 1
    # every training and validation item, once an epoch, in batches drawn from both at once
    assert np.all(train_after - train_before == n_epochs)
    assert np.all(val_after - val_before == n_epochs)
    n_samples = len(target["y"]) + len(target["y_val"])
    assert epochs[0][1] == -(-n_samples // conv4.batch_size)


def test_batches_come_from_the_base_nets_iterator_settings(conv4, target):
    calls = {"train": 0, "valid": 0}

    def collate(which):
        def collate_fn(items):
            calls[which] += 1
            return torch.utils.data.default_collate(items)
        return collate_fn

    net = NeuralNetClassifier(copy.deepcopy(conv4.module_), criterion=nn.CrossEntropyLoss,
                              optimizer=torch.optim.Adam, lr=1e-3, batch_size=32,
                              iterator_train__collate_fn=collate("train"),
                              iterator_valid__collate_fn=collate("valid"))
    tuner = FlexTuner(net, strategy="ft-fc", max_epochs=2, patience=None, refit=False,
                      random_state=0).fit(as_dataset(target["X"], target["y"]),
                                          X_val=as_dataset(target["X_val"], target["y_val"]))
    n_batches = -(-len(target["y"]) // net.batch_size)
    assert calls["train"] == 2 * n_batches  # every training batch of the 2 epochs
    before = calls["valid"]
    assert before > 0  # reading the labels, then validation
    tuner.predict(as_dataset(target["X_test"]))
    assert calls["valid"] > before


class Augmenting(Dataset):
    """Adds fresh noise at every read, and counts the reads of each item."""

    def __init__(self, X, y):
        self.X, self.y = torch.as_tensor(X), torch.as_tensor(y)
        self.reads = np.zeros(len(X), dtype=int)
        self.generator = torch.Generator().manual_seed(0)

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        self.reads[i] += 1
        return self.X[i] + 0.05 * torch.randn(self.X[i].shape, generator=self.generator), \
            self.y[i]


@pytest.mark.parametrize("cache", ["auto", True])
def test_augmentation_is_read_again_every_epoch(conv4, target, cache):
    data = Augmenting(target["X"], target["y"])
    epochs = 4
    FlexTuner(conv4, strategy="ft-fc", max_epochs=epochs, patience=None, refit=False,
              activation_cache=cache, random_state=0).fit(
        data, X_val=as_dataset(target["X_val"], target["y_val"]))
    if cache == "auto":  # every item, once to read the labels, then once per epoch
        assert data.reads.min() >= 1 + epochs
    else:  # True freezes one draw: labels, then one cached pass
        assert data.reads.max() <= 3


# -- class names ----------------------------------------------------------------------------------


def test_declared_classes_are_the_labels(conv4, target):
    net = copy.deepcopy(conv4).set_params(classes=NAMES)
    names = np.asarray(NAMES)
    keep = np.isin(target["y"], [2, 5, 7])
    keep_val = np.isin(target["y_val"], [2, 5, 7])
    tuner = FlexTuner(net, strategy="ft-fc", **FAST).fit(
        target["X"][keep], names[target["y"][keep]], X_val=target["X_val"][keep_val],
        y_val=names[target["y_val"][keep_val]])
    assert tuner.classes_.tolist() == ["two", "five", "seven"]  # in the order of the outputs
    predicted = tuner.predict(target["X_test"])
    assert set(predicted) <= {"two", "five", "seven"}
    by_index = FlexTuner(conv4, strategy="ft-fc", **FAST).fit(
        target["X"][keep], target["y"][keep], X_val=target["X_val"][keep_val],
        y_val=target["y_val"][keep_val])
    np.testing.assert_array_equal(predicted, names[by_index.predict(target["X_test"])])
    np.testing.assert_array_equal(tuner.predict_proba(target["X_test"]),
                                  by_index.predict_proba(target["X_test"]))
    test = np.isin(target["y_test"], [2, 5, 7])
    assert tuner.score(target["X_test"][test], names[target["y_test"][test]]) == \
        by_index.score(target["X_test"][test], target["y_test"][test])


@pytest.mark.parametrize("labels, message", [
    (lambda y: np.where(y == 3, "cat", np.asarray(NAMES)[y]),
     r"labels \['cat'\] that base_net's classes do not declare"),
    (lambda y: y, "holds numbers, but base_net declares string classes"),
])
def test_labels_must_be_declared(conv4, target, labels, message):
    net = copy.deepcopy(conv4).set_params(classes=NAMES)
    with pytest.raises(ValueError, match=message):
        FlexTuner(net, **FAST).fit(target["X"], labels(target["y"]))


def test_declared_classes_must_name_every_output(conv4, target):
    net = copy.deepcopy(conv4).set_params(classes=NAMES[:5])
    with pytest.raises(ValueError, match="declares 5 classes but its module has 10 outputs"):
        FlexTuner(net, **FAST).fit(target["X"], np.asarray(NAMES)[target["y"]])


def test_string_labels_in_a_dataset(conv4, target):
    class Named(Dataset):
        def __len__(self):
            return len(target["y"])

        def __getitem__(self, i):
            return torch.as_tensor(target["X"][i]), NAMES[target["y"][i]]

    net = copy.deepcopy(conv4).set_params(classes=NAMES)
    tuner = FlexTuner(net, strategy="ft-fc", **FAST).fit(Named())
    assert tuner.classes_.tolist() == NAMES
    assert 0 <= tuner.score(Named()) <= 1


# -- validation data through a Pipeline ---------------------------------------------------------


def _scaled_pipeline(conv4, seen):
    def scale(X):
        return np.asarray(X) * 0.5

    class Spy(FlexTuner):
        def fit(self, X, y, *, X_val=None, y_val=None):
            seen.append(X_val)
            return super().fit(X, y, X_val=X_val, y_val=y_val)

    tuner = Spy(conv4, strategy="ft-fc", **FAST)
    return Pipeline([("scale", FunctionTransformer(scale)), ("tuner", tuner)],
                    transform_input=["X_val"])


def test_validation_data_go_through_the_pipeline_with_metadata_routing(conv4, target):
    seen = []
    with sklearn.config_context(enable_metadata_routing=True):
        pipeline = _scaled_pipeline(conv4, seen)
        pipeline[-1].set_fit_request(X_val=True, y_val=True)
        pipeline.fit(target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    np.testing.assert_array_equal(seen[0], target["X_val"] * 0.5)


def test_routing_without_a_request_is_an_error(conv4, target):
    from sklearn.exceptions import UnsetMetadataPassedError

    with sklearn.config_context(enable_metadata_routing=True):
        pipeline = _scaled_pipeline(conv4, [])
        with pytest.raises(UnsetMetadataPassedError, match="set_fit_request"):
            pipeline.fit(target["X"], target["y"], X_val=target["X_val"],
                         y_val=target["y_val"])


# -- units for modern architectures ----------------------------------------------------------------


PROBE = torch.rand(2, 1, 8, 8)


def unit_names(module, units="blocks"):
    return [u.name for u in resolve_units(module.eval(), units, PROBE)]


def test_blocks_of_a_timm_like_vit():
    units = resolve_units(TinyViT().eval(), "blocks", PROBE)
    assert [u.name for u in units] == ["patch_embed", "blocks.0", "blocks.1", "blocks.2",
                                       "norm", "head"]
    assert units[0].params == ("cls_token", "pos_embed")  # the root's join the first unit


def test_blocks_of_a_torchvision_like_vit():
    units = resolve_units(TorchvisionViT().eval(), "blocks", PROBE)
    assert [u.name for u in units] == ["conv_proj", "encoder.layers.encoder_layer_0",
                                       "encoder.layers.encoder_layer_1", "encoder.ln",
                                       "heads.head"]
    assert units[0].params == ("class_token",)
    assert units[1].params == ("encoder.pos_embedding",)


def test_blocks_of_a_mobilenet_and_a_resnet():
    assert unit_names(mobilenet_like()) == ["features.0", "features.1", "features.2",
                                            "features.3", "classifier.0", "classifier.3"]
    assert unit_names(ResNetLike()) == ["conv1", "bn1", "layer1.0", "layer1.1", "layer2.0",
                                        "layer2.1", "fc"]
    assert unit_names(ResNetLike(), "auto") == ["conv1", "bn1", "layer1", "layer2", "fc"]


def test_blocks_of_a_vit_end_to_end(target):
    tuner = FlexTuner(small_net(TinyViT()), units="blocks", strategy="flex",
                      **FAST).fit(target["X"], target["y"], X_val=target["X_val"],
                                  y_val=target["y_val"])
    assert tuner.units_ == ["patch_embed", "blocks.0", "blocks.1", "blocks.2", "norm", "head"]
    assert set(tuner.validation_scores_) == set(tuner.units_) | {"all"}


def test_root_parameters_as_unit_members(target):
    net = small_net(TinyViT())
    units = {"embed": ["patch_embed", "cls_token", "pos_embed"], "body": ["blocks"],
             "top": ["norm", "head"]}
    tuner = FlexTuner(net, units=units, strategy="flex", keep_candidates=True, refit=False,
                      **FAST).fit(target["X"], target["y"], X_val=target["X_val"],
                                  y_val=target["y_val"])
    before, after = net.module.state_dict(), tuner.candidates_["embed"].state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert {"cls_token", "pos_embed"} <= changed
    assert all(k.startswith("patch_embed.") or k in ("cls_token", "pos_embed") for k in changed)
    body = tuner.candidates_["body"].state_dict()
    assert torch.equal(body["pos_embed"], before["pos_embed"])


def test_a_unit_of_parameters_only_is_refused():
    with pytest.raises(ValueError, match="needs at least one module"):
        resolve_units(TinyViT().eval(), {"tokens": ["cls_token"], "rest": ["head"]}, PROBE)


def test_preview_units(conv4, target):
    rows = preview_units(conv4, target["X"])
    assert [row.name for row in rows] == ["conv1", "conv2", "fc1", "fc2"]
    assert rows[0].members == ("conv1",)
    assert sum(row.n_parameters for row in rows) == sum(
        p.numel() for p in conv4.module_.parameters())
    vit = preview_units(small_net(TinyViT()), target["X"], units="blocks")
    assert vit[0] == ("patch_embed", ("patch_embed", "cls_token", "pos_embed"),
                      sum(p.numel() for p in TinyViT().patch_embed.parameters()) + 16 + 5 * 16)
    assert preview_units(TinyViT(), as_dataset(target["X"], target["y"]))[-1].name == "head"


def test_unit_errors_list_many_names_compactly():
    module = nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)) for _ in range(30)])
    with pytest.raises(ValueError, match=r"Valid module names \(90, by top-level module\): "
                                         r"0 \(\+2 nested\), 1 \(\+2 nested\)") as info:
        resolve_units(module, ["nope"], torch.zeros(2, 4))
    assert len(str(info.value)) < 800


# -- modules that return a tuple -----------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["flex", "fast", "ft-ss"])
def test_a_module_returning_a_tuple(target, strategy):
    net = small_net(TupleOutput())
    tuner = FlexTuner(net, strategy=strategy, **FAST).fit(
        target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    proba = tuner.predict_proba(target["X_test"])
    logits = tuner.net_.module_(torch.as_tensor(target["X_test"]))[0].detach()
    np.testing.assert_allclose(proba, torch.softmax(logits, 1).numpy(), rtol=1e-5, atol=1e-6)
    assert tuner.transform(target["X_test"]).shape == (len(target["X_test"]), 32)


# -- nothing dropped silently -------------------------------------------------------------------


def test_base_net_callbacks_are_named_once_per_fit(conv4, target):
    net = copy.deepcopy(conv4).set_params(callbacks=[
        ("sched", LRScheduler(policy="StepLR", step_size=1)), EarlyStopping()])
    with pytest.warns(UserWarning, match=r"applies base_net's LRScheduler and "
                                         r"GradientNormClipping callbacks but not the others "
                                         r"\(EarlyStopping\)") as caught:
        FlexTuner(net, strategy="ft-fc", **FAST).fit(target["X"], target["y"])
    assert sum("callbacks" in str(w.message) for w in caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)  # 3 epochs: still improving
        FlexTuner(conv4, strategy="ft-fc", **FAST).fit(target["X"], target["y"])


@pytest.mark.parametrize("params", [
    dict(base_net__module=nn.Linear(2, 2)), dict(base_net__module__n_classes=10)])
def test_set_params_refuses_to_replace_the_pretrained_module(conv4, params):
    tuner = FlexTuner(conv4, **FAST)
    before = copy.deepcopy(conv4.module_.state_dict())
    with pytest.raises(ValueError, match="lose the pretrained weights"):
        tuner.set_params(**params)
    assert all(torch.equal(before[k], v) for k, v in conv4.module_.state_dict().items())
    # other nested parameters work, on the tuner's own copy of the net
    assert tuner.set_params(base_net__lr=0.5) is tuner and tuner.base_net.lr == 0.5
    assert conv4.lr == 1e-3 and tuner.base_net is not conv4


def test_grid_search_over_module_parameters_is_refused(conv4, target):
    search = GridSearchCV(FlexTuner(conv4, **FAST), {"base_net__module__n_classes": [10]}, cv=2)
    with pytest.raises(ValueError, match="lose the pretrained weights"):
        search.fit(target["X"], target["y"])


# -- memory ------------------------------------------------------------------------------------


def test_forward_passes_without_gradients_use_bounded_batches(monkeypatch):
    from flexsk import _tuner

    module = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
                           nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4))
    net = small_net(module, batch_size=32)
    rng = np.random.RandomState(0)
    X, y = rng.rand(600, 3, 64, 64).astype(np.float32), np.arange(600) % 4
    tuner = FlexTuner(net, strategy="ft-fc", max_epochs=1, refit=False,
                      random_state=0).fit(X[:40], y[:40], X_val=X[40:80], y_val=y[40:80])
    sizes = []
    module_ = tuner.net_.module_
    module_[0].register_forward_pre_hook(lambda m, args: sizes.append(len(args[0])))
    tuner.predict(X)
    per_sample = 2 * 32 * 64 * 64 * 4 + 3 * 64 * 64 * 4  # the widest activation, in and out
    assert max(sizes) == max(32, _tuner.EVAL_BATCH_BYTES // per_sample)
    assert sum(sizes) == len(X)
    np.testing.assert_allclose(tuner.predict_log_proba(X[:50]),
                               np.log(tuner.predict_proba(X[:50])), rtol=1e-6)


# -- mixed inputs, edge cases -----------------------------------------------------------------


class _Plain(Dataset):
    """The most common hand-written Dataset: numpy-backed, with int labels."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return torch.from_numpy(self.X[i]), int(self.y[i])


class _Faulty(_Plain):
    """A Dataset with one bad item: NaN in its input, an exception, or another shape."""

    def __init__(self, X, y, bad, fault):
        super().__init__(X, y)
        self.bad, self.fault = bad, fault

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        if i == self.bad:
            if self.fault == "nan":
                x = x.clone()
                x[0, 3, 3] = float("nan")
            elif self.fault == "raises":
                raise KeyError(f"no image {i}")
            else:
                x = x[:, :-1]
        return x, y


@pytest.mark.parametrize("fault, message", [
    ("nan", r"Item 44 of the _Faulty holds NaN or infinity; inputs must be finite"),
    ("raises", r"Reading item 44 of the _Faulty raised KeyError: 'no image 44'"),
    ("shape", r"Item 44 of the _Faulty has an input of shape \(1, 7, 8\), unlike the "
              r"others of its batch \(\(1, 8, 8\), item \d+\)"),
])
@pytest.mark.parametrize("where", ["train", "val"])
def test_a_bad_dataset_item_is_named(conv4, target, fault, message, where):
    X, y, X_val, y_val = target["X"], target["y"], target["X_val"], target["y_val"]
    if where == "train":
        data = dict(X=_Faulty(X, y, 44, fault), y=None, X_val=X_val, y_val=y_val)
    else:
        data = dict(X=X, y=y, X_val=_Faulty(X_val, y_val, 44, fault), y_val=None)
    with pytest.raises(ValueError, match=message) as caught:
        FlexTuner(conv4, strategy="ft-fc", **FAST).fit(**data)
    assert "lr" not in str(caught.value)
    if fault == "raises":
        assert isinstance(caught.value.__cause__, KeyError)


class _SpoilsLater(_Plain):
    """Item 7 turns NaN (or raises) once the first full reading is over: as a random
    augmentation may, during training."""

    def __init__(self, X, y, fault):
        super().__init__(X, y)
        self.fault, self.reads = fault, 0

    def __getitem__(self, i):
        self.reads += 1
        x, y = super().__getitem__(i)
        if i == 7 and self.reads > len(self):
            if self.fault == "raises":
                raise RuntimeError("augmentation failed")
            x = torch.full_like(x, float("inf"))
        return x, y


@pytest.mark.parametrize("fault, message", [
    ("nan", r"Item 7 of the _SpoilsLater holds NaN or infinity"),
    ("raises", r"Reading item 7 of the _SpoilsLater raised RuntimeError: augmentation failed")])
def test_a_dataset_item_that_goes_bad_during_training_is_named(conv4, target, fault, message):
    data = _SpoilsLater(target["X"], target["y"], fault)
    with pytest.raises(ValueError, match=message):
        FlexTuner(conv4, strategy="ft-fc", activation_cache=False, **FAST).fit(
            data, X_val=target["X_val"], y_val=target["y_val"])


@pytest.mark.parametrize("mix", ["dataset+arrays", "arrays+dataset", "cv"])
def test_datasets_and_arrays_mix(conv4, target, mix):
    X, y, X_val, y_val = target["X"], target["y"], target["X_val"], target["y_val"]
    tuner = FlexTuner(conv4, strategy="ft-fc", **FAST)
    if mix == "dataset+arrays":
        refitted(lambda: tuner.fit(_Plain(X, y), X_val=X_val, y_val=y_val))
    elif mix == "arrays+dataset":
        refitted(lambda: tuner.fit(X, y, X_val=_Plain(X_val, y_val)))
    else:  # folds over a Dataset joined with tensor samples
        refitted(lambda: tuner.set_params(cv=2).fit(
            _Plain(X, y), X_val=as_dataset(X_val, y_val)))
    assert tuner.predict(_Plain(target["X_test"], target["y_test"])).shape == (
        len(target["y_test"]),)


def test_an_empty_dataset_in_prediction_is_named(conv4, target):
    tuner = FlexTuner(conv4, strategy="ft-fc", **FAST).fit(target["X"], target["y"])
    with pytest.raises(ValueError, match="empty Dataset"):
        tuner.predict(as_dataset(target["X"][:0]))


def test_cv_folds_must_see_every_class_they_validate(conv4, target):
    from sklearn.model_selection import KFold

    order = np.argsort(target["y"], kind="stable")
    with pytest.raises(ValueError, match=r"Fold \d of cv validates on classes"):
        FlexTuner(conv4, cv=KFold(2), **FAST).fit(target["X"][order], target["y"][order])


def test_a_single_unit_is_named(target):
    net = small_net(nn.Sequential(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)),
                                  nn.Softmax(dim=-1)), criterion=nn.NLLLoss)
    with pytest.warns(UserWarning, match="single unit"):
        FlexTuner(net, strategy="flex", **FAST).fit(target["X"], target["y"])


def test_callbacks_have_no_side_effects(conv4, target, tmp_path):
    from skorch.callbacks import Checkpoint

    net = copy.deepcopy(conv4).set_params(callbacks=[Checkpoint(dirname=str(tmp_path / "ck"))])
    with pytest.warns(UserWarning, match="Checkpoint"):
        FlexTuner(net, strategy="ft-fc", **FAST).fit(target["X"], target["y"])
    assert not (tmp_path / "ck").exists()


def test_units_used_by_their_parent_without_being_called():
    # MultiheadAttention uses out_proj's weights in a functional call
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16,
                                       batch_first=True)
    module = nn.Sequential(nn.Linear(4, 8), layer, nn.Linear(8, 3))
    units = resolve_units(module.eval(), ["0", "1.self_attn.out_proj", "2"],
                          torch.zeros(2, 5, 4))
    assert [u.name for u in units] == ["0", "1.self_attn.out_proj", "2"]
    with pytest.raises(ValueError, match="units is empty"):
        resolve_units(module, [], torch.zeros(2, 5, 4))
