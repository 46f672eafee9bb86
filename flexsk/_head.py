"""A new output layer for labels the pretrained net never had (FlexTuner's ``head``).

``head="new"`` replaces the network's output layer (its *head*) by a freshly
initialized :class:`torch.nn.Linear` with one output per class of ``y``. The
head is found from the forward pass: the last layer that owns parameters,
which must be a linear layer with as many outputs as the network. A user may
name it instead (``head="classifier.fc"``).

The new head trains in every run (:class:`~flexsk._training.FineTuning`
adds it to each candidate). In a run that tunes it with other weights (a
unit, ``"all"``) it starts as torch initializes an ``nn.Linear``, seeded
from the fit's ``random_state`` (``HEAD_START``); in a run that tunes the
head alone (ft-fc's linear probe) it starts as a logistic regression on the
pretrained features of the run's training data (``HEAD_ALONE_START``,
:func:`start_head`). ``benchmarks/new_classes.py`` measures the choices
(the user guide quotes the figures).
"""

import copy

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from ._inputs import integral
from ._locks import forward_pass
from ._network import first_output
from ._units import Unit

__all__ = ["HEAD_OPTIONS", "HEAD_START", "wants_new_head", "find_head", "replace_head",
           "start_head"]

#: The named behaviours of ``head``; any other string names the output layer to replace.
HEAD_OPTIONS = ("auto", "keep", "new")

#: How a new head starts in a run that tunes it with other weights: "random", torch's
#: initialization of nn.Linear; "probe", a logistic regression on the pretrained features
#: of the run's training samples. On benchmarks/new_classes.py's 40 scenarios, the random
#: start gave flex, fast and ft-all higher accuracies and flex a lower selection regret.
HEAD_START = "random"

#: How it starts in a run that tunes the head alone: "probe" or "random". There the
#: probe is the optimum of nearly the same convex problem, which gradient descent from a
#: random start approaches slowly (ft-fc: 0.80 against 0.71 on the same scenarios).
HEAD_ALONE_START = "probe"

#: The logistic regression's inverse regularization, on standardized features.
PROBE_C = 1.0


def wants_new_head(head, labels, y):
    """Whether ``head`` asks for a new output layer for labels ``y``.

    ``"auto"`` keeps the head when every label names an output: an output
    index, or a class the net declares. A net that declares class names
    keeps its head (an undeclared label is then refused, as a likely typo).
    A net that declares none gets a new head when the labels are not output
    indices: strings, booleans, non-integers, or integers outside
    ``[0, n_outputs)``.
    """
    if head == "keep":
        return False
    if head != "auto":
        return True
    if labels.declared is not None:
        return False
    y = np.asarray(y)
    if y.dtype.kind not in "iuf" or not integral(y):  # strings, booleans (yes/no), 0.5...
        return True
    return bool(np.any((y < 0) | (y >= labels.n_outputs)))


def _called_layers(module, probe):
    """(name, layer) of every submodule that owns parameters directly, in the order their
    calls start (the root, which may own some, e.g. a ViT's position embedding, left out)."""
    calls = []
    owners = {name: layer for name, layer in module.named_modules()
              if name and any(True for _ in layer.parameters(recurse=False))}
    handles = [layer.register_forward_pre_hook(
        lambda mod, args, name=name: calls.append(name)) for name, layer in owners.items()]
    try:
        with torch.no_grad(), forward_pass():
            module.eval()
            module(probe)
    finally:
        for handle in handles:
            handle.remove()
    return [(name, owners[name]) for name in calls]


def find_head(module, probe, n_outputs):
    """The dotted name of the output layer: the last layer called that owns parameters.

    It must be a :class:`torch.nn.Linear` with ``n_outputs`` outputs; anything
    else raises a ValueError that says what was found and how to name the head.
    """
    if isinstance(module, nn.Linear):
        raise ValueError("The network is a single nn.Linear: a new head would replace all of "
                         "it, leaving nothing pretrained. Wrap the pretrained layers and the "
                         "output layer in submodules (nn.Sequential(...)).")
    calls = _called_layers(module, probe)
    if not calls:
        raise ValueError("head='new' found no layer with parameters in the forward pass to "
                         "replace. Name the output layer: head='<module name>'.")
    name, layer = calls[-1]
    if not _is_linear(layer) or layer.out_features != n_outputs:
        linear = [n for n, m in calls if _is_linear(m) and m.out_features == n_outputs]
        hint = (f" The last linear layer with {n_outputs} outputs is {linear[-1]!r}; pass "
                f"head={linear[-1]!r} if it is the output layer." if linear else "")
        raise ValueError(
            f"head='new' looks for the output layer as the last layer with parameters in the "
            f"forward pass, which is {name!r} ({type(layer).__name__}); it must be an "
            f"nn.Linear with the net's {n_outputs} outputs.{hint} Or name the output layer: "
            f"head='<module name>'.")
    return name


def _is_linear(layer):
    """A plain, materialized nn.Linear: a subclass (a cosine classifier, say) would lose its
    own forward in the plain nn.Linear that replaces it."""
    return type(layer) is nn.Linear


def replace_head(module, name, n_classes, seed, probe):
    """Replace the linear layer ``name`` of ``module`` (in place) by a fresh one with
    ``n_classes`` outputs, initialized as torch initializes ``nn.Linear``, from
    ``seed``. Returns the :class:`~flexsk._units.Unit` of the new head."""
    submodules = dict(module.named_modules())
    if name not in submodules or not name:
        raise ValueError(f"head={name!r} is not a module of the network (nor one of "
                         f"{list(HEAD_OPTIONS)}). Its last modules are "
                         f"{[n for n in submodules if n][-5:]}.")
    old = submodules[name]
    if not _is_linear(old):
        kind = ("a subclass of nn.Linear, whose own behaviour a plain nn.Linear would lose"
                if isinstance(old, nn.Linear) else f"a {type(old).__name__}")
        raise ValueError(f"head={name!r} is {kind}; only a plain nn.Linear output layer can "
                         f"be replaced by a new head.")
    weight = old.weight
    with torch.random.fork_rng(devices=[weight.device.index or 0]
                               if weight.device.type == "cuda" else []):
        torch.manual_seed(seed)
        new = nn.Linear(old.in_features, n_classes, bias=old.bias is not None,
                        device=weight.device, dtype=weight.dtype)
    parent_name, _, attr = name.rpartition(".")
    setattr(module.get_submodule(parent_name), attr, new)
    with torch.no_grad(), forward_pass():
        module.eval()
        try:
            outputs = first_output(module(probe))
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ValueError(
                f"With {n_classes} outputs in place of {old.out_features}, {name!r} breaks the "
                f"forward pass ({exc}): a layer after it depends on its {old.out_features} "
                f"outputs, so it cannot be resized. A new head must be the layer that "
                f"produces the logits: name it with head='<module name>'.") from exc
    if outputs.dim() != 2 or outputs.shape[1] != n_classes:
        raise ValueError(
            f"Replacing {name!r} by a layer with {n_classes} outputs gives outputs of shape "
            f"{tuple(outputs.shape)}, not (n_samples, {n_classes}): {name!r} is not the layer "
            f"that produces the logits. Name the output layer: head='<module name>'.")
    return Unit(name, (name,))


def start_head(pretrained, head, samples, batch_size, alone=False):
    """``pretrained`` with its new ``head`` as a run on ``samples`` starts it.

    ``alone``: the run tunes the head alone (``HEAD_ALONE_START``), else with
    other weights (``HEAD_START``). ``"random"``: ``pretrained`` itself.
    ``"probe"``: a copy whose head is a multinomial logistic regression (L2,
    ``C=PROBE_C`` on standardized features, lbfgs) fitted on the head's
    inputs for the training ``samples`` (their targets are output indices),
    folded back into the head's weights and bias; labels the samples do not
    all cover keep their random rows. ``pretrained`` is not modified.
    """
    if (HEAD_ALONE_START if alone else HEAD_START) == "random":
        return pretrained
    module = copy.deepcopy(pretrained)
    layer = module.get_submodule(head.modules[0])
    features, targets = [], []
    handle = layer.register_forward_pre_hook(
        lambda mod, args: features.append(args[0].detach().flatten(1).float().cpu()))
    try:
        module.eval()
        with torch.no_grad(), forward_pass():
            for X, y in samples.eval_batches(batch_size):
                module(X)
                targets.append(y.cpu())
    finally:
        handle.remove()
    features = torch.cat(features).numpy().astype(np.float64)
    targets = torch.cat(targets).numpy()
    present = np.unique(targets)
    if len(present) < 2 or features.shape[1] != layer.in_features:
        return module  # the head sees more than one vector per sample: no probe start
    mean, scale = features.mean(0), features.std(0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=PROBE_C, max_iter=1000)
    model.fit((features - mean) / scale, targets)
    coef = model.coef_ / scale
    intercept = model.intercept_ - coef @ mean
    if len(present) == 2:  # one row: the log-odds of the second class, split in halves
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    with torch.no_grad():
        weight = layer.weight
        rows = torch.as_tensor(present, device=weight.device)
        weight[rows] = torch.as_tensor(coef, dtype=weight.dtype, device=weight.device)
        if layer.bias is not None:
            layer.bias[rows] = torch.as_tensor(intercept, dtype=weight.dtype,
                                               device=weight.device)
    return module
