"""Retrieval metrics for embeddings.

:func:`map_at_k` scores how well an embedding space retrieves items of the
query's class: for every query, the gallery is ranked by distance and the top
``k`` are compared with the query's label.

The code is split like torchmetrics': :func:`_average_precision_at_k` is a
small pure function of a relevance matrix, and :func:`_nearest_neighbors` is
the chunked exact nearest-neighbour search that produces the ranking.

:func:`make_retrieval_scorer` turns it into a scikit-learn scorer for a
fitted :class:`~flexsk.FlexTuner`: target images embedded by the tuned net
query source images embedded by the pretrained net (the paper's Section 5.3).
"""

import hashlib
import numbers

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.validation import check_is_fitted

from ._checks import check_not_bool
from ._config import get_config

__all__ = ["map_at_k", "make_retrieval_scorer"]


_METRICS = ("euclidean", "cosine")
_EMPTY_POLICIES = ("raise", "zero", "skip")
_OPTIONS = {
    "k": [Interval(numbers.Integral, 1, None, closed="left")],
    "metric": [StrOptions(set(_METRICS))],
    "empty": [StrOptions(set(_EMPTY_POLICIES))],
}


@validate_params({"query_embeddings": ["array-like"], "query_labels": ["array-like"],
                  "gallery_embeddings": ["array-like"], "gallery_labels": ["array-like"],
                  **_OPTIONS}, prefer_skip_nested_validation=True)
def map_at_k(query_embeddings, query_labels, gallery_embeddings, gallery_labels,
             *, k=10, metric="euclidean", empty="raise"):
    """Mean average precision at ``k`` of retrieving a query's class from a gallery.

    Every query ranks the whole gallery by distance (exact search, no
    approximation); its AP@k rewards gallery items of its own class near the
    top of the ranking. The result is the mean of AP@k over the queries.

    Parameters
    ----------
    query_embeddings : array-like or torch.Tensor of shape (n_queries, n_features)
        Embeddings of the queries.
    query_labels : array-like or torch.Tensor of shape (n_queries,)
        Class of each query. Any labels that :func:`numpy.unique` can sort
        (ints, strings, ...).
    gallery_embeddings : array-like or torch.Tensor of shape (n_gallery, n_features)
        Embeddings of the gallery searched for each query.
    gallery_labels : array-like or torch.Tensor of shape (n_gallery,)
        Class of each gallery item, comparable with ``query_labels``.
    k : int, default=10
        Number of top-ranked gallery items scored, at least 1. If ``k``
        exceeds the gallery size, the whole gallery is ranked.
    metric : {"euclidean", "cosine"}, default="euclidean"
        Distance used for the ranking. Cosine distance is
        ``1 - cosine similarity``; a zero vector has cosine similarity 0, so
        cosine distance 1, to every vector.
    empty : {"raise", "zero", "skip"}, default="raise"
        What to do with a query whose class has no item in the gallery:
        ``"raise"`` a ValueError naming the absent classes, score it ``"zero"``
        (it still counts in the mean), or ``"skip"`` it (left out of the
        mean; a ValueError is raised if every query is skipped).

    Returns
    -------
    float
        mAP@k, in [0, 1].

    Notes
    -----
    For a query whose class has ``R`` items in the gallery, let ``rel_i`` be 1
    if the ``i``-th nearest gallery item has the query's class and 0
    otherwise, and ``P@i`` the fraction of such items among the first ``i``.
    Then

    .. math:: AP@k = \\frac{1}{\\min(k, R)} \\sum_{i=1}^{k} P@i \\cdot rel_i

    so that AP@k is 1 exactly when the first ``min(k, R)`` items all have the
    query's class. This is the ``min(k, R)`` convention of the classic AP@k
    (e.g. the ``ml_metrics`` ``apk`` function). torchmetrics'
    ``RetrievalMAP(top_k=k)`` divides instead by the number of relevant items
    found in the top ``k``, which gives a larger value when fewer than
    ``min(k, R)`` relevant items are retrieved (e.g. 1 rather than 1/2 for
    relevances ``[1, 0]`` with ``R = 2``). When ``k`` exceeds the gallery
    size, all gallery items are ranked and the denominator stays
    ``min(k, R) = R``.

    Ties in distance are broken by gallery index: of two gallery items at
    the same distance, the one with the lower index ranks first. Ties are
    exact ties in the distance as computed. The ranking is computed in
    float64 if either embedding array is float64 and in float32 otherwise,
    with matrix products: euclidean rankings use ``||g||^2 - 2 q.g`` (the
    squared distance less the query's constant ``||q||^2``), cosine ones
    ``-(q / ||q||).(g / ||g||)``. Items whose true distances are equal
    (for instance duplicate gallery vectors) are exact ties whenever this
    arithmetic is exact (e.g. small integer coordinates); otherwise rounding
    can separate them by a last bit, and that rounding, not the index,
    decides their order.

    The search is exact and runs on the device of the embeddings if they are
    torch tensors (CPU for arrays, one device for both). Queries are scored
    in blocks whose query-by-gallery matrix takes at most 256 MiB, so memory
    does not grow with the number of queries; the cosine metric also makes a
    normalised copy of the gallery.

    Examples
    --------
    >>> import numpy as np
    >>> from flexsk.metrics import map_at_k
    >>> gallery = np.array([[0.0], [1.0], [2.0], [10.0]])
    >>> gallery_labels = np.array(["cat", "dog", "cat", "dog"])
    >>> queries = np.array([[0.4], [5.0]])
    >>> query_labels = ["cat", "dog"]

    The first query ranks the gallery ``cat, dog, cat``: relevances
    ``[1, 0, 1]`` with R = 2, so AP@3 = (1 + 2/3) / 2 = 5/6. The second one
    is at distance 5, 4, 3 and 5 from the gallery items: the tie between
    items 0 and 3 goes to item 0, so it ranks ``cat, dog, cat`` and scores
    AP@3 = (0 + 1/2 + 0) / 2 = 1/4. The mean is 13/24.

    >>> round(map_at_k(queries, query_labels, gallery, gallery_labels, k=3), 6)
    0.541667
    >>> map_at_k(queries, query_labels, gallery, gallery_labels, k=1)
    0.5
    """
    check_not_bool("map_at_k", k=k)
    k = int(k)
    queries, gallery = _check_embeddings(query_embeddings, gallery_embeddings)
    query_labels = _check_labels(query_labels, len(queries), "query")
    gallery_labels = _check_labels(gallery_labels, len(gallery), "gallery")
    kinds = {_label_kind(query_labels), _label_kind(gallery_labels)} - {None}
    if len(kinds) > 1:
        raise ValueError(
            f"query_labels ({query_labels.dtype}) and gallery_labels ({gallery_labels.dtype}) "
            f"must both be numbers or both be strings: a label such as '0' never matches 0.")

    classes, codes = np.unique(np.concatenate([query_labels, gallery_labels]),
                               return_inverse=True)
    query_codes, gallery_codes = codes[:len(queries)], codes[len(queries):]
    n_relevant = np.bincount(gallery_codes, minlength=len(classes))[query_codes]
    present = n_relevant > 0
    if not present.all():
        if empty == "raise":
            absent = classes[np.unique(query_codes[~present])]
            raise ValueError(
                f"{len(absent)} query class(es) have no item in the gallery: "
                f"{absent[:10].tolist()}{' ...' if len(absent) > 10 else ''}. "
                "Pass empty='zero' or empty='skip' to score them anyway.")
        if empty == "skip" and not present.any():
            raise ValueError("No query class is present in the gallery: every "
                             "query was skipped (empty='skip').")

    # Queries with R = 0 score 0 whatever their neighbours: search only the others.
    scores = np.zeros(len(queries))
    if present.any():
        keep = torch.from_numpy(np.flatnonzero(present)).to(queries.device)
        ranking = _nearest_neighbors(queries[keep], gallery, k, metric).cpu().numpy()
        relevance = gallery_codes[ranking] == query_codes[present, None]
        scores[present] = _average_precision_at_k(relevance, n_relevant[present], k)
    if empty == "skip":
        scores = scores[present]
    return float(scores.mean())


def _average_precision_at_k(relevance, n_relevant, k):
    """AP@k of each query from the relevance of its ranked neighbours.

    Parameters
    ----------
    relevance : array-like of shape (n_queries, n_ranked)
        0/1 (or bool) relevance of the ``n_ranked <= k`` nearest gallery
        items, nearest first.
    n_relevant : array-like of shape (n_queries,)
        Number ``R`` of relevant gallery items of each query.
    k : int
        Cut-off; the denominator is ``min(k, R)`` (AP@k is 0 where R = 0).

    Returns
    -------
    ndarray of shape (n_queries,)
    """
    relevance = np.asarray(relevance, dtype=float)
    precision = np.cumsum(relevance, axis=1) / np.arange(1, relevance.shape[1] + 1)
    denominator = np.minimum(k, np.asarray(n_relevant))
    return (precision * relevance).sum(axis=1) / np.maximum(denominator, 1)


def _nearest_neighbors(queries, gallery, k, metric):
    """Indices of the ``min(k, n_gallery)`` nearest gallery items of each query.

    Rows are sorted by (distance, gallery index): exact ties go to the lower
    index. Queries are processed in blocks whose score matrix takes at most
    the setting ``working_memory`` (MiB; :func:`flexsk.config_context`), or one
    query per block if a row alone is larger.
    """
    n_gallery = gallery.shape[0]
    m = min(k, n_gallery)
    if metric == "cosine":
        # Rank by -(q/|q|).(g/|g|) (1 - cosine similarity, less the constant 1);
        # negation is exact. Zero vectors stay 0: similarity 0 to everything.
        tiny = torch.finfo(gallery.dtype).tiny
        queries = -queries / queries.norm(dim=1, keepdim=True).clamp_min(tiny)
        gallery = gallery / gallery.norm(dim=1, keepdim=True).clamp_min(tiny)
        # Adding the zero offset also turns -0.0 into +0.0, which radix-based
        # sorts (CUDA) would otherwise order before +0.0.
        offset, alpha = gallery.new_zeros(()), 1
    else:
        # Rank by ||g||^2 - 2 q.g, i.e. ||q - g||^2 less the row constant ||q||^2.
        offset, alpha = _squared_norms(gallery), -2
    block_bytes = int(get_config()["working_memory"] * 2 ** 20)
    chunk = max(1, block_bytes // (n_gallery * gallery.element_size()))
    out = torch.empty((queries.shape[0], m), dtype=torch.long, device=queries.device)
    buffer = None
    for start in range(0, queries.shape[0], chunk):
        block = queries[start:start + chunk]
        if buffer is None:
            buffer = block.new_empty((len(block), n_gallery))
        dist = torch.addmm(offset, block, gallery.T, alpha=alpha, out=buffer[:len(block)])
        out[start:start + chunk] = _smallest_by_index(dist, m)
    return out


def _smallest_by_index(dist, m):
    """Column indices of the ``m`` smallest entries of each row, by (value, index)."""
    if m < dist.shape[1]:
        values, index = torch.topk(dist, m + 1, dim=1, largest=False)
        index = index[:, :m]
        # topk picks arbitrarily among values tied with the m-th smallest. Where
        # such a tie crosses the cut (the (m+1)-th equals the m-th), keep all
        # values below the m-th and the lowest-index ties to make up m.
        tied = torch.nonzero(values[:, m] == values[:, m - 1]).flatten()
        if len(tied):
            rows = dist[tied]
            threshold = values[tied, m - 1:m]
            below, at = rows < threshold, rows == threshold
            wanted = m - below.sum(dim=1, keepdim=True)
            keep = below | (at & (at.cumsum(dim=1, dtype=torch.int32) <= wanted))
            index[tied] = torch.nonzero(keep)[:, 1].view(-1, m)
    else:
        index = torch.arange(dist.shape[1], device=dist.device).expand(dist.shape[0], -1)
    # Sort by index, then stably by value: equal values stay in index order.
    index = index.sort(dim=1).values
    order = dist.gather(1, index).sort(dim=1, stable=True).indices
    return index.gather(1, order)


def _squared_norms(x):
    """Squared norms of the rows of ``x``, without a temporary the size of ``x``."""
    return torch.einsum("ij,ij->i", x, x)


def _check_labels(labels, n_samples, name):
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name}_labels must be 1D, got shape {labels.shape}.")
    if len(labels) != n_samples:
        raise ValueError(f"{name}_labels has {len(labels)} labels but {name}_embeddings "
                         f"has {n_samples} rows.")
    return labels


def _label_kind(labels):
    """"number", "string" or "mixed" (None when empty): kinds never match each other."""
    if labels.size == 0:
        return None
    if labels.dtype.kind in "biuf":
        return "number"
    if labels.dtype.kind in "US":
        return "string"
    if all(isinstance(label, str) for label in labels):
        return "string"
    if all(isinstance(label, numbers.Number) for label in labels):
        return "number"
    return "mixed"


def _to_tensor(x, name):
    """``x`` as a 2D real tensor (arrays go to the CPU, tensors keep their device)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype == torch.bool or x.is_complex():
            raise ValueError(f"{name} must be real numbers, got dtype {x.dtype}.")
    else:
        x = np.asarray(x)
        if x.dtype.kind not in "iuf":
            raise ValueError(f"{name} must be real numbers, got dtype {x.dtype}.")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2D (n_samples, n_features), got shape "
                         f"{tuple(x.shape)}.")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}.")
    return x


def _check_embeddings(query_embeddings, gallery_embeddings):
    """Both embeddings as tensors of one floating dtype on one device."""
    devices = {x.device for x in (query_embeddings, gallery_embeddings)
               if isinstance(x, torch.Tensor)}
    if len(devices) > 1:
        raise ValueError(f"query and gallery embeddings are on different devices: "
                         f"{sorted(map(str, devices))}.")
    device = devices.pop() if devices else torch.device("cpu")
    queries = _to_tensor(query_embeddings, "query_embeddings")
    gallery = _to_tensor(gallery_embeddings, "gallery_embeddings")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"query_embeddings have {queries.shape[1]} features but "
                         f"gallery_embeddings have {gallery.shape[1]}.")
    dtype = torch.float64 if torch.float64 in (queries.dtype, gallery.dtype) else torch.float32
    checked = []
    for x, name in [(queries, "query_embeddings"), (gallery, "gallery_embeddings")]:
        x = x.to(device=device, dtype=dtype)
        squared_norms = _squared_norms(x)
        if not torch.isfinite(x[~torch.isfinite(squared_norms)]).all():
            raise ValueError(f"{name} contain NaN or infinity.")
        # Bound the squared norms so that neither they nor ||g||^2 - 2 q.g overflow.
        if not (squared_norms < torch.finfo(dtype).max / 4).all():
            raise ValueError(f"{name} are too large: their squared norms overflow {dtype}.")
        checked.append(x)
    return checked


class _RetrievalScorer:
    """``scorer(estimator, X, y)``: mAP@k of X (tuned net) against the source gallery."""

    #: Galleries kept, one per (pretrained weights, cut, preprocessed source).
    max_galleries = 8

    def __init__(self, X_source, y_source, *, k, metric, empty):
        self.X_source = X_source
        self.y_source = y_source
        self.k = k
        self.metric = metric
        self.empty = empty
        self._galleries = {}

    def __call__(self, estimator, X, y):
        tuner, X_source = estimator, self.X_source
        if hasattr(estimator, "steps"):  # a Pipeline: the source goes through its preprocessing
            tuner = estimator[-1]
            if len(estimator) > 1:
                X_source = estimator[:-1].transform(X_source)
        gallery = self._gallery(tuner, X_source)
        return map_at_k(estimator.transform(X), y, gallery, self.y_source, k=self.k,
                        metric=self.metric, empty=self.empty)

    def _gallery(self, tuner, X_source):
        if not hasattr(tuner, "pretrained_fingerprint"):
            raise TypeError(
                f"The retrieval scorer needs a fitted FlexTuner (or a Pipeline ending in one), "
                f"got {type(tuner).__name__}.")
        check_is_fitted(tuner)
        source = np.ascontiguousarray(_as_array(X_source))
        key = (tuner.pretrained_fingerprint(), hashlib.sha256(source.tobytes()).hexdigest(),
               source.shape, str(source.dtype))
        if key not in self._galleries:
            if len(self._galleries) >= self.max_galleries:
                self._galleries.pop(next(iter(self._galleries)))
            self._galleries[key] = tuner.pretrained_transform(source)
        return self._galleries[key]

    def __getstate__(self):
        return {**self.__dict__, "_galleries": {}}

    def __repr__(self):
        return f"make_retrieval_scorer(k={self.k}, metric={self.metric!r}, empty={self.empty!r})"


def _as_array(X):
    if torch.is_tensor(X):
        return X.detach().cpu().numpy()
    return np.asarray(X)


@validate_params({"X_source": ["array-like"], "y_source": ["array-like"], **_OPTIONS},
                 prefer_skip_nested_validation=True)
def make_retrieval_scorer(X_source, y_source, *, k=10, metric="euclidean", empty="raise"):
    """A scikit-learn scorer: retrieval mAP@k of tuned embeddings against the source.

    For a fitted :class:`~flexsk.FlexTuner`, the scorer embeds ``X_source``
    with the *pretrained* base net (:meth:`~flexsk.FlexTuner.pretrained_transform`)
    and the scored ``X`` with the tuned net (:meth:`~flexsk.FlexTuner.transform`),
    both at the tuner's ``embedding_unit`` cut, then returns
    :func:`map_at_k` of X (queries, labels ``y``) against the source gallery
    (labels ``y_source``). Higher is better. This is the paper's retrieval
    evaluation (Section 5.3, Table 4): a tuned unit that "mends" the
    representation brings target images close to their source class.

    Parameters
    ----------
    X_source : array-like of shape (n_source, ...)
        Source-domain inputs, the gallery.
    y_source : array-like of shape (n_source,)
        Their labels.
    k : int, default=10
    metric : {"euclidean", "cosine"}, default="euclidean"
    empty : {"raise", "zero", "skip"}, default="raise"
        What to do with a query whose class is absent from the gallery; see
        :func:`map_at_k`.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``, usable as ``scoring=`` in
        :class:`~sklearn.model_selection.GridSearchCV` or in a dict of
        scorers for :func:`~sklearn.model_selection.cross_validate`. When the
        estimator is a :class:`~sklearn.pipeline.Pipeline`, ``X_source`` goes
        through the same preprocessing steps (``estimator[:-1]``) first.

    Notes
    -----
    Gallery embeddings are computed once per pretrained weights, cut and
    (preprocessed) source data, keyed by a hash of the pretrained state dict,
    and reused across calls, e.g. across the candidates and folds of a grid
    search. The scorer keeps the last few galleries in memory.

    Examples
    --------
    >>> from flexsk import FlexTuner
    >>> from flexsk.datasets import load_digits_source, make_digits_shift
    >>> from flexsk.metrics import make_retrieval_scorer
    >>> from flexsk.zoo import load_source_net
    >>> X_source, y_source = load_digits_source(split="test", return_X_y=True)
    >>> X, y = make_digits_shift("noise", split="train", return_X_y=True)
    >>> scorer = make_retrieval_scorer(X_source, y_source, k=10)
    >>> tuner = FlexTuner(load_source_net("conv4"), strategy="ft-fc", max_epochs=2,
    ...                   random_state=0).fit(X, y)
    >>> 0.0 <= scorer(tuner, X, y) <= 1.0
    True
    """
    check_not_bool("make_retrieval_scorer", k=k)
    y_source = np.asarray(_as_array(y_source))
    if len(y_source) != len(X_source):
        raise ValueError(f"X_source has {len(X_source)} samples but y_source has "
                         f"{len(y_source)}.")
    return _RetrievalScorer(X_source, y_source, k=k, metric=metric, empty=empty)
