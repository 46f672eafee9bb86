"""Zero-training selection: relative gradient norms (Auto-RGN, surgical fine-tuning)."""

import copy

import torch

from .._locks import forward_pass
from .._training import gather, over_folds, seed_for
from ._outcome import Outcome, best_of

__all__ = ["rgn", "relative_gradient_norms", "n_runs"]


def rgn(ft):
    """Rank units by relative gradient norm at the pretrained weights; tune the top one.

    Lee et al. (ICLR 2023) show that gradient statistics at the pretrained
    weights rank layers without any training. Each unit's score is the mean
    over its parameter tensors of ``||grad|| / ||weights||`` on a few
    minibatches of target training data (:func:`relative_gradient_norms`);
    the highest-scoring unit (the earliest on ties) is fine-tuned from the
    pretrained weights. Selection costs at most one epoch of ft-all's forward
    and backward passes; the scores are the proxy scores.
    """
    scores = relative_gradient_norms(ft)
    best = best_of(scores)
    return Outcome(best, {best: ft.tune(best)}, scores)


@over_folds
def relative_gradient_norms(ft, n_batches=4):
    """Relative gradient norm of every unit at the pretrained weights (Auto-RGN).

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
    data, opt = ft.data, ft.optimization
    module = copy.deepcopy(ft.pretrained).eval()
    named = dict(module.named_parameters())
    owned = {unit.name: [n for n in named if unit.owns(n)] for unit in ft.units}
    names = [n for unit_names in owned.values() for n in unit_names]
    tensors = [named[n].requires_grad_(True) for n in names]
    norms = {n: named[n].detach().norm().item() for n in names}
    seed = seed_for(ft.base_seed, "rgn")
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for X, y in data.train.train_batches(opt.batch_size, generator):
        chosen.append((X, y))
        if len(chosen) == n_batches:
            break
    ratios = dict.fromkeys(names, 0.0)
    with torch.random.fork_rng(devices=ft.device_ids):
        torch.manual_seed(seed)
        for X, y in chosen:
            with ft.autocast(), forward_pass():
                loss = opt.get_loss(gather(module(X), data.classes, opt.probabilities), y)
            grads = torch.autograd.grad(loss, tensors, allow_unused=True)
            for name, grad in zip(names, grads):
                if grad is not None and norms[name] > 0:
                    ratios[name] += grad.norm().item() / norms[name] / len(chosen)
    scores = {}
    for unit_name, unit_names in owned.items():
        scored = [ratios[n] for n in unit_names if norms[n] > 0]
        scores[unit_name] = sum(scored) / len(scored) if scored else 0.0
    return scores


def n_runs(n_units):
    return 1
