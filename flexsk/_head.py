"""A new output layer for labels the pretrained net never had (FlexTuner's ``head``).

``head="new"`` replaces the network's output layer (its *head*) by a freshly
initialized :class:`torch.nn.Linear` with one output per class of ``y``. The
head is found from the forward pass: the last layer that owns parameters,
which must be a linear layer with as many outputs as the network. A user may
name it instead (``head="classifier.fc"``).

The new head trains in every run (:class:`~flexsk._training.FineTuning`
adds it to each candidate). In a run that tunes it with other weights (a
unit, ``"all"``) it starts as torch initializes an ``nn.Linear``, seeded
from the fit's ``random_state``; in a run that tunes the head alone (ft-fc's
linear probe) it starts as a logistic regression on the pretrained features
of the run's training data (:func:`start_head`; the settings ``head_start``
and ``head_alone_start`` of :func:`flexsk.config_context`).
``benchmarks/new_classes.py`` measures the choices (the user guide quotes
the figures).
"""

import copy

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from ._inputs import integral
from . import _forward
from ._forward import first_output
from ._units import Unit

__all__ = ["HEAD_OPTIONS", "wants_new_head", "check_ends_in_a_layer",
           "find_head", "replace_head",
           "start_head"]

#: The named behaviours of ``head``; any other string names the output layer to replace.
HEAD_OPTIONS = ("auto", "keep", "new")

# How a new head starts is a setting (flexsk.config_context: head_start, head_alone_start).
# In a run that tunes it with other weights, "random" (the default), torch's
# initialization of nn.Linear, or "probe", a logistic regression on the pretrained
# features of the run's training samples: on benchmarks/new_classes.py's 40 scenarios,
# the random start gave flex, fast and ft-all higher accuracies and flex a lower
# selection regret. In a run that tunes the head alone, "probe" (the default): there the
# probe is the optimum of nearly the same convex problem, which gradient descent from a
# random start approaches slowly (ft-fc: 0.80 against 0.71 on the same scenarios).

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
    owners = {name: layer for name, layer in module.named_modules()
              if name and any(True for _ in layer.parameters(recurse=False))}
    return [(name, owners[name]) for name in _forward.calls(module, probe, owners, every=True)]


def check_ends_in_a_layer(module, probe, head):
    """Refuse a network whose outputs come out of an ``nn.Identity``: a classifier
    replaced by one (the usual way to make a backbone) leaves features, not class
    scores. ``head`` is FlexTuner's, for the advice."""
    called = _leaf_calls(module, probe)
    if not called or not isinstance(module.get_submodule(called[-1]), nn.Identity):
        return
    name = called[-1]
    width = first_output(_forward.run(module, probe)).shape[-1]
    advice = ("head='new' replaces it and trains it" if head == "new" else
              "and pass head='new', which trains it")
    raise ValueError(
        f"The network's outputs come out of {name!r}, an nn.Identity: its {width} outputs "
        f"are the features before it, not class scores (a classifier replaced by "
        f"nn.Identity makes a backbone). Give the network an output layer in its place, "
        f"say nn.Linear({width}, n_classes), {advice} with every candidate.")


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
    _check_gives_the_outputs(module, probe, name, layer)
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


def _check_gives_the_outputs(module, probe, name, layer):
    """The output layer's outputs must be the network's, or their softmax (or log)."""
    result, seen = _forward.outputs(module, probe)
    result, own = first_output(result), seen.get(name)
    if torch.is_tensor(own) and own.shape == result.shape and any(
            torch.allclose(f(own), result, rtol=1e-4, atol=1e-5)
            for f in (lambda x: x, lambda x: x.softmax(-1), lambda x: x.log_softmax(-1))):
        return
    calls = _leaf_calls(module, probe)
    last = max((i for i, n in enumerate(calls) if n == name), default=len(calls))
    after = [f"{n!r} ({type(module.get_submodule(n)).__name__})" for n in calls[last + 1:]]
    following = f" ({', '.join(after)} come after it)" if after else ""
    raise ValueError(
        f"head='new' looks for the output layer as the last layer with parameters in the "
        f"forward pass, which is {name!r} ({type(layer).__name__}), but the network's "
        f"outputs are not its outputs{following}. Name the output layer: "
        f"head='<module name>', or give the network one.")


def _leaf_calls(module, probe):
    """The names of the modules without submodules, one per call, in call order."""
    leaves = [name for name, layer in module.named_modules()
              if name and not any(True for _ in layer.children())]
    return _forward.calls(module, probe, leaves, every=True)


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
    try:
        outputs = first_output(_forward.run(module, probe))
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


def start_head(pretrained, head, samples, batch_size, start):
    """``pretrained`` with its new ``head`` as a run on ``samples`` starts it.

    ``start``: ``"random"``, ``pretrained`` itself; ``"probe"``, a copy whose
    head is a multinomial logistic regression (L2, ``C=PROBE_C`` on
    standardized features, lbfgs) fitted on the head's inputs for the
    training ``samples`` (their targets are output indices), folded back
    into the head's weights and bias; labels the samples do not all cover
    keep their random rows. ``pretrained`` is not modified.
    """
    if start == "random":
        return pretrained
    module = copy.deepcopy(pretrained)
    layer = module.get_submodule(head.modules[0])
    features, targets = [], []
    for X, y in samples.eval_batches(batch_size):
        features.append(_forward.inputs(module, X, [head.modules[0]])[head.modules[0]]
                        .detach().flatten(1).float().cpu())
        targets.append(y.cpu())
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
