"""Selection by network surgery: fast (Algorithm 2) and faster (Algorithm 3)."""

from ._outcome import Outcome, best_of

__all__ = ["fast", "faster", "tuned_evaluations", "n_runs"]


def fast(ctx):
    """Fast flex-tuning (Algorithm 2).

    Fine-tune all units (line 1); score the proxy nets, each the pretrained net
    with one unit taken from ft-all (lines 3-6); fine-tune the best proxy's
    unit starting from the *pretrained* weights (line 8); keep it unless ft-all
    validates better (line 10): higher accuracy, or equal accuracy and lower loss.
    """
    all_units = ctx.tune("all")
    proxy_scores = ctx.proxy_evaluations(all_units.module)
    best = best_of(proxy_scores)
    tuned = {best: ctx.tune(best), "all": all_units}
    return Outcome(best_of(tuned_evaluations(tuned)), tuned, proxy_scores, donor="all")


def faster(ctx):
    """Even faster flex-tuning (Algorithm 3).

    Fine-tune all units for a single epoch (line 1), keeping its weights as
    they are; score the proxies (lines 2-5); fine-tune the best proxy's unit
    from the pretrained weights (line 7). Always returns the tuned unit.
    """
    one_epoch = ctx.tune("all", stopping=ctx.stopping.replace(max_epochs=1, patience=None),
                         keep_best=False)
    proxy_scores = ctx.proxy_evaluations(one_epoch.module)
    best = best_of(proxy_scores)
    return Outcome(best, {best: ctx.tune(best)}, proxy_scores, donor="all")


def tuned_evaluations(tuned):
    return {key: candidate.evaluation for key, candidate in tuned.items()}


def n_runs(n_units):
    return 2
