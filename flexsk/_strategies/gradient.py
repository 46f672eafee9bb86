"""Zero-training selection: rank units by relative gradient norm, tune the top one.

Faithful Auto-RGN, which trains every tensor at a learning rate scaled by its
relative gradient norm, is the recipe ``"auto-rgn"`` (:mod:`.recipes`).
"""

from ._outcome import Outcome, best_of

__all__ = ["rgn_unit", "n_runs"]


def rgn_unit(ctx):
    """Rank units by relative gradient norm at the pretrained weights; tune the top one.

    A selector built on the statistic of Auto-RGN (Lee et al., ICLR 2023),
    which scales every tensor's learning rate by it instead (``"auto-rgn"``):
    gradient statistics at the pretrained weights rank layers without any
    training. Each unit's score is the mean
    over its parameter tensors of ``||grad|| / ||weights||`` on a few
    minibatches of target training data (the context's
    ``relative_gradient_norms``);
    the highest-scoring unit (the earliest on ties) is fine-tuned from the
    pretrained weights. Selection costs at most one epoch of ft-all's forward
    and backward passes; the scores are the proxy scores.
    """
    scores = ctx.relative_gradient_norms()
    best = best_of(scores)
    return Outcome(best, {best: ctx.tune(best)}, scores)


def n_runs(n_units):
    return 1
