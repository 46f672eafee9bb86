"""Selection by network surgery: fast (Algorithm 2) and faster (Algorithm 3)."""

from ._outcome import Outcome, best_of


def fast(ft, **options):
    """Fast flex-tuning (Algorithm 2).

    Fine-tune all units (line 1); score the proxy nets, each the pretrained net
    with one unit taken from ft-all (lines 3-6); fine-tune the best proxy's
    unit starting from the *pretrained* weights (line 8); keep it unless ft-all
    validates strictly better (line 10).
    """
    all_units = ft.tune("all")
    proxy_scores = ft.proxy_scores(all_units.module)
    best = best_of(proxy_scores)
    tuned = {best: ft.tune(best), "all": all_units}
    selected = best if tuned[best].val_score >= all_units.val_score else "all"
    return Outcome(selected, tuned, proxy_scores)


def faster(ft, **options):
    """Even faster flex-tuning (Algorithm 3).

    Fine-tune all units for a single epoch (line 1), keeping its weights as
    they are; score the proxies (lines 2-5); fine-tune the best proxy's unit
    from the pretrained weights (line 7). Always returns the tuned unit.
    """
    one_epoch = ft.tune("all", max_epochs=1, patience=None, keep="last")
    proxy_scores = ft.proxy_scores(one_epoch.module)
    best = best_of(proxy_scores)
    return Outcome(best, {best: ft.tune(best)}, proxy_scores)


fast.n_runs = lambda n_units, **options: 2  # training runs, for progress bars
faster.n_runs = lambda n_units, **options: 2  # training runs, for progress bars
