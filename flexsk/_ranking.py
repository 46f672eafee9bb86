"""The ranking rule, in one place: validation accuracy, then loss, then order.

Wherever flexsk picks a best model (an epoch of a run, a proxy, a candidate,
a rung of halving, a combination of units) and wherever its reports and
figures replay a pick, models rank by:

1. validation accuracy, higher first;
2. validation loss, lower first; a non-finite loss (a diverged run) ranks
   after every finite one;
3. the order of the keys: forward order of the units, ``"all"`` last.
"""

import math

__all__ = ["ranked"]


def ranked(scores, losses=None):
    """The keys of ``scores`` from best to worst under the ranking rule.

    Parameters
    ----------
    scores : dict
        Key -> validation accuracy, in forward order.
    losses : dict or None, default=None
        Key -> validation loss; a key missing from it ranks as a diverged
        run. None ranks by accuracy, then order (scores without losses,
        e.g. relative gradient norms).

    Returns
    -------
    list
    """
    keys = list(scores)
    position = {key: i for i, key in enumerate(keys)}

    def sort_key(key):
        if losses is None:
            return (False, -scores[key], 0.0, position[key])
        loss = losses.get(key)
        finite = loss is not None and math.isfinite(loss)
        return (not finite, -scores[key], loss if finite else math.inf, position[key])

    return sorted(keys, key=sort_key)
