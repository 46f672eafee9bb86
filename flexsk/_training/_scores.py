"""The scoring primitives beside training: proxy nets and relative gradient norms.

Both score every unit without training it. They are methods of the training
context (:meth:`FineTuning.proxy_evaluations`,
:meth:`FineTuning.relative_gradient_norms`), which a cross-validated context
averages over its folds.
"""

import copy

import torch

from .. import _surgery
from .._locks import forward_pass
from ._data import gather, seed_for

__all__ = ["proxy_evaluations", "relative_gradient_norms", "tensor_relative_gradient_norms"]


def proxy_evaluations(ctx, donor):
    """Validation accuracy and loss of every proxy net: pretrained, one unit from ``donor``.

    Algorithm 2, lines 3-6. All proxies share the pretrained prefix, so one
    pretrained pass gives every cuttable unit's input, and each proxy only
    runs its suffix. With a new head (``ctx.head``), every proxy also takes
    the donor's head: the pretrained net's is freshly initialized, and a
    proxy is then "the pretrained net with the donor's unit and head", the
    weights a candidate of that unit would train.
    """
    inputs = ctx.cache.val_inputs([unit.name for unit in ctx.units])
    workspace = copy.deepcopy(ctx.pretrained)
    if ctx.head is not None:
        _surgery.load_state(workspace, _surgery.donor_tensors(workspace, donor, ctx.head))
    evaluations = {}
    for unit in ctx.units:
        with _surgery.unit_from(workspace, donor, unit):
            if unit.name in inputs:
                evaluations[unit.name] = ctx.evaluate(ctx.cache.suffix(workspace, unit.name),
                                                      inputs[unit.name])
            else:
                evaluations[unit.name] = ctx.evaluate(workspace)
    return evaluations


def relative_gradient_norms(ctx, n_batches=4):
    """Relative gradient norm of every unit at the pretrained weights (the unit ranking
    of ``strategy="rgn-unit"``).

    For every parameter tensor ``p`` of a unit, ``||grad p|| / ||p||`` of
    the training loss on one minibatch of target training data, averaged
    over the first ``n_batches`` minibatches of a seeded shuffle (at most
    one epoch's worth); a unit's score is the mean over its tensors
    (Lee et al., "Surgical fine-tuning", ICLR 2023). Nothing is trained:
    gradients are taken on a copy of the pretrained net, with no optimizer
    step, and the whole net runs in eval mode, so BatchNorm statistics and
    dropout stay as pretrained. Tensors of norm zero are left out (their
    ratio is undefined); a unit with none scores 0.

    Returns
    -------
    dict
        Unit name -> score, in forward order.
    """
    module = copy.deepcopy(ctx.pretrained).eval()
    named = [n for n, _ in module.named_parameters()]
    owned = {unit.name: [n for n in named if unit.owns(n)] for unit in ctx.units}
    ratios = tensor_relative_gradient_norms(
        ctx, module, [n for names in owned.values() for n in names], n_batches,
        seed_for(ctx.base_seed, "rgn"))
    scores = {}
    for unit_name, unit_names in owned.items():
        scored = [ratios[n] for n in unit_names if n in ratios]
        scores[unit_name] = sum(scored) / len(scored) if scored else 0.0
    return scores


def tensor_relative_gradient_norms(ctx, module, names, n_batches, seed):
    """``||grad p|| / ||p||`` of each parameter ``names`` of ``module`` (in the mode it is
    in), averaged over the first ``n_batches`` minibatches of a shuffle seeded with
    ``seed``; tensors of norm zero are left out. Nothing is trained."""
    data, opt = ctx.data, ctx.optimization
    named = dict(module.named_parameters())
    norms = {n: named[n].detach().norm().item() for n in names}
    names = [n for n in names if norms[n] > 0]
    flags = {n: p.requires_grad for n, p in named.items()}
    tensors = [named[n].requires_grad_(True) for n in names]
    chosen = []
    for X, y in data.train.train_batches(opt.batch_size, torch.Generator().manual_seed(seed)):
        chosen.append((X, y))
        if len(chosen) == n_batches:
            break
    ratios = dict.fromkeys(names, 0.0)
    try:
        with torch.random.fork_rng(devices=ctx.device_ids):
            torch.manual_seed(seed)
            for X, y in chosen:
                with ctx.autocast(), forward_pass():
                    loss = opt.get_loss(gather(module(X), data.classes, opt.probabilities), y)
                grads = torch.autograd.grad(loss, tensors, allow_unused=True)
                for name, grad in zip(names, grads):
                    if grad is not None:
                        ratios[name] += grad.norm().item() / norms[name] / len(chosen)
    finally:
        for n, p in named.items():
            p.requires_grad_(flags[n])
    return ratios
