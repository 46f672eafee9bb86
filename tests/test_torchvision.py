"""Units of real torchvision and timm architectures (optional: skipped without them).

The weights are random (``weights=None``): nothing is downloaded. torchvision's
wheel may not match the installed torch build, in which case importing it
raises something other than ImportError; the tests skip then too.
"""

import importlib

import pytest
import torch

from flexsk import preview_units
from flexsk._units import resolve_units


def _import_or_skip(name):
    try:
        return importlib.import_module(name)
    except Exception as error:  # a missing package, or a wheel built for another torch
        pytest.skip(f"{name} cannot be imported here: {type(error).__name__}: {error}")


def names(module, probe):
    return [unit.name for unit in resolve_units(module.eval(), "blocks", probe)]


def test_torchvision_resnet18_blocks():
    models = _import_or_skip("torchvision.models")
    module = models.resnet18(weights=None)
    assert names(module, torch.rand(2, 3, 64, 64)) == [
        "conv1", "bn1", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1",
        "layer4.0", "layer4.1", "fc"]


def test_torchvision_mobilenet_v3_small_blocks():
    models = _import_or_skip("torchvision.models")
    module = models.mobilenet_v3_small(weights=None)
    found = names(module, torch.rand(2, 3, 64, 64))
    n_features = len(module.features)
    assert found == [f"features.{i}" for i in range(n_features)] + ["classifier.0",
                                                                    "classifier.3"]


def test_torchvision_vit_blocks():
    models = _import_or_skip("torchvision.models")
    module = models.VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2,
                                      hidden_dim=16, mlp_dim=32, num_classes=10)
    units = resolve_units(module.eval(), "blocks", torch.rand(2, 3, 32, 32))
    assert [u.name for u in units] == [
        "conv_proj", "encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1",
        "encoder.layers.encoder_layer_2", "encoder.ln", "heads.head"]
    assert units[0].params == ("class_token",)
    assert units[1].params == ("encoder.pos_embedding",)


def test_timm_vit_blocks():
    timm = _import_or_skip("timm")
    module = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32,
                               patch_size=8, num_classes=10, depth=2)
    rows = preview_units(module, torch.rand(2, 3, 32, 32), units="blocks")
    assert [row.name for row in rows] == ["patch_embed", "blocks.0", "blocks.1", "norm", "head"]
    assert {"cls_token", "pos_embed"} <= set(rows[0].members)


@pytest.mark.parametrize("build, size, head", [
    (lambda models: models.resnet18(weights=None), 64, "fc"),
    (lambda models: models.mobilenet_v3_small(weights=None), 64, "classifier.3"),
    (lambda models: models.VisionTransformer(image_size=32, patch_size=8, num_layers=2,
                                             num_heads=2, hidden_dim=16, mlp_dim=32,
                                             num_classes=10), 32, "heads.head"),
])
def test_the_output_layer_of_torchvision_nets_is_found_and_replaced(build, size, head):
    from flexsk._head import find_head, replace_head

    models = _import_or_skip("torchvision.models")
    module = build(models).eval()
    probe = torch.rand(2, 3, size, size)
    n_outputs = module(probe).shape[1]
    assert find_head(module, probe, n_outputs) == head
    unit = replace_head(module, head, 3, seed=0, probe=probe)
    assert unit.modules == (head,) and module(probe).shape == (2, 3)
