"""Zero-training selection: relative gradient norms (Auto-RGN, surgical fine-tuning)."""

from ._outcome import Outcome, best_of

__all__ = ["rgn", "n_runs"]


def rgn(ctx):
    """Rank units by relative gradient norm at the pretrained weights; tune the top one.

    Lee et al. (ICLR 2023) show that gradient statistics at the pretrained
    weights rank layers without any training. Each unit's score is the mean
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
