"""``preview_units``: how a network splits into units, before any fit."""

from collections import namedtuple

import numpy as np
import torch
from skorch import NeuralNetClassifier
from sklearn.utils._param_validation import validate_params
from torch import nn

from ._inputs import check_tensor, dataset_inputs, is_dataset, loader_kwargs
from ._locks import forward_pass
from ._network import device_of, pretrained_module
from ._units import UNITS_CONSTRAINT, resolve_units

__all__ = ["UnitPreview", "preview_units"]


class UnitPreview(namedtuple("UnitPreview", ["name", "members", "n_parameters"])):
    """One row of :func:`preview_units`: a unit as FlexTuner would tune it.

    Parameters
    ----------
    name : str
        The unit's name (a key of FlexTuner's ``validation_scores_``).
    members : tuple of str
        Dotted names of its modules, then of the parameters it holds
        directly (e.g. a ViT's ``cls_token``).
    n_parameters : int
        How many parameters tuning the unit trains.

    Examples
    --------
    >>> from flexsk import UnitPreview
    >>> row = UnitPreview("head", ("head",), 650)
    >>> row.name, row.n_parameters
    ('head', 650)
    """

    __slots__ = ()


@validate_params({"base_net": [NeuralNetClassifier, nn.Module], "X": "no_validation",
                  "units": UNITS_CONSTRAINT},
                 prefer_skip_nested_validation=True)
def preview_units(base_net, X, units="auto"):
    """The units a network splits into, in forward order, before fitting.

    Runs one forward pass on the first two samples of ``X`` (in eval mode,
    without gradients) on a copy of the network, to find the order in which
    the units run; nothing is trained and ``base_net`` is not modified.

    Parameters
    ----------
    base_net : skorch.NeuralNetClassifier or torch.nn.Module
        The pretrained network, as :class:`~flexsk.FlexTuner` takes it (or
        its module).
    X : array-like, torch.Tensor of shape (n_samples, ...) or Dataset
        Inputs the network takes (two samples are enough).
    units : "auto", "blocks", list or dict, default="auto"
        As FlexTuner's ``units``.

    Returns
    -------
    list of UnitPreview
        One ``(name, members, n_parameters)`` row per unit: its name, the
        dotted names of its modules and parameters, and how many parameters
        it tunes.

    Examples
    --------
    >>> import numpy as np
    >>> from flexsk import preview_units
    >>> from flexsk.zoo import load_source_net
    >>> net = load_source_net("conv4")
    >>> for row in preview_units(net, np.zeros((2, 1, 16, 16), dtype=np.float32)):
    ...     print(row.name, row.members, row.n_parameters)
    conv1 ('conv1',) 160
    conv2 ('conv2',) 4640
    fc1 ('fc1',) 32832
    fc2 ('fc2',) 650
    """
    if isinstance(base_net, nn.Module):
        module = pretrained_module(NeuralNetClassifier(base_net))
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
    else:
        module = pretrained_module(base_net).to(device_of(base_net))
        device = device_of(base_net)
    if is_dataset(X):
        kwargs = loader_kwargs(base_net, "iterator_valid") if not isinstance(
            base_net, nn.Module) else {}
        batch = next(iter(torch.utils.data.DataLoader(X, batch_size=2, **kwargs)))
        probe = dataset_inputs(batch, "X")
    elif torch.is_tensor(X):
        probe = check_tensor(X[:2], "X")
    else:
        probe = check_tensor(torch.as_tensor(np.asarray(X[:2], dtype=np.float32)), "X")
    probe = probe.to(device)
    with torch.no_grad(), forward_pass():
        module.eval()(probe)  # materializes lazy modules
    resolved = resolve_units(module, units, probe)
    parameters = dict(module.named_parameters())
    return [UnitPreview(unit.name, unit.members,
                        sum(p.numel() for name, p in parameters.items() if unit.owns(name)))
            for unit in resolved]
