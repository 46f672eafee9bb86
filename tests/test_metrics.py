"""Tests of flexsk.metrics.map_at_k against a brute-force reference written here."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import flexsk
from flexsk.metrics import map_at_k

SETTINGS = settings(max_examples=40, deadline=None)


# --------------------------------------------------------------------------
# Independent reference: full float64 distance rows, stable argsort, the
# AP@k formula written out with explicit loops.
# --------------------------------------------------------------------------
def reference_distances(query, gallery, metric):
    query = np.asarray(query, dtype=np.float64)
    gallery = np.asarray(gallery, dtype=np.float64)
    if metric == "euclidean":
        return np.sqrt(((gallery - query) ** 2).sum(axis=1))
    out = np.empty(len(gallery))
    for j, item in enumerate(gallery):
        nq, ng = np.sqrt(query @ query), np.sqrt(item @ item)
        similarity = 0.0 if nq == 0 or ng == 0 else (query @ item) / (nq * ng)
        out[j] = 1.0 - similarity
    return out


def reference_ap(ranked_labels, label, n_relevant, k):
    hits, total = 0, 0.0
    for i, other in enumerate(ranked_labels[:k], start=1):
        if other == label:
            hits += 1
            total += hits / i
    return total / min(k, n_relevant)


def reference_map(queries, query_labels, gallery, gallery_labels, k, metric="euclidean",
                  empty="raise"):
    gallery_labels = list(gallery_labels)
    scores = []
    for query, label in zip(queries, query_labels):
        n_relevant = sum(1 for other in gallery_labels if other == label)
        if n_relevant == 0:
            if empty == "raise":
                raise ValueError("absent class")
            if empty == "zero":
                scores.append(0.0)
            continue
        order = np.argsort(reference_distances(query, gallery, metric), kind="stable")
        ranked = [gallery_labels[j] for j in order]
        scores.append(reference_ap(ranked, label, n_relevant, k))
    if not scores:
        raise ValueError("all skipped")
    return sum(scores) / len(scores)


def gaussian_data(seed, n_queries=15, n_gallery=40, dim=6, n_classes=4, dtype=np.float64):
    """Continuous random data: no ties, and gaps far above float32 rounding."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n_queries, dim)).astype(dtype),
            rng.integers(0, n_classes, n_queries),
            rng.standard_normal((n_gallery, dim)).astype(dtype),
            rng.integers(0, n_classes, n_gallery))


def integer_data(seed, n_queries=15, n_gallery=40, dim=3, high=4, n_classes=4,
                 dtype=np.float32):
    """Small integer coordinates: float32 arithmetic is exact, ties are many."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-high, high + 1, (n_queries, dim)).astype(dtype),
            rng.integers(0, n_classes, n_queries),
            rng.integers(-high, high + 1, (n_gallery, dim)).astype(dtype),
            rng.integers(0, n_classes, n_gallery))


def exact_tie_data(seed, metric):
    """Many exact ties that float32 computes exactly: small integers for the
    euclidean metric; zeros and axis directions (cosines -1, 0, 1) for cosine."""
    q, ql, g, gl = integer_data(seed, dim=2, high=2)
    if metric == "cosine":
        q, g = np.sign(q) * 2, np.sign(g) * 2
        q[:, 1] *= q[:, 0] == 0
        g[:, 1] *= g[:, 0] == 0
    return q, ql, g, gl


# --------------------------------------------------------------------------
# Hand-computed values
# --------------------------------------------------------------------------
def line_gallery(labels):
    """Gallery items on a line at 1, 2, 3, ... so a query at 0 ranks them in order."""
    return np.arange(1, len(labels) + 1, dtype=float)[:, None], np.asarray(labels)


@pytest.mark.parametrize("relevance, k, expected", [
    ([1, 0, 1], 3, (1 + 2 / 3) / 2),          # R = 2
    ([1, 0, 1, 0], 3, (1 + 2 / 3) / 2),
    ([0, 1, 0, 1], 3, (1 / 2) / 2),            # the 2nd hit is beyond k
    ([1, 0, 1], 2, 1 / 2),                     # R = 2; torchmetrics would say 1
    ([0, 1, 1], 1, 0.0),
    ([1, 1, 1, 1], 2, 1.0),                    # R >= k, all relevant
    ([0, 1], 5, 1 / 2),                        # k > gallery size: denominator R = 1
    ([0, 0, 1, 1], 10, (1 / 3 + 2 / 4) / 2),
])
def test_hand_computed(relevance, k, expected):
    gallery, labels = line_gallery(relevance)
    assert map_at_k([[0.0]], [1], gallery, labels, k=k) == pytest.approx(expected, abs=1e-12)


def test_mean_over_queries_hand_computed():
    gallery, labels = line_gallery([1, 0, 1])
    # query at 0 (class 1): [1, 0, 1] -> 5/6; query at 4 (class 0): ranks 3, 2, 1 -> [0, 1, 0]
    # -> (1/2) / 1 = 1/2.
    value = map_at_k([[0.0], [4.0]], [1, 0], gallery, labels, k=3)
    assert value == pytest.approx((5 / 6 + 1 / 2) / 2, abs=1e-12)


def test_returns_python_float():
    gallery, labels = line_gallery([1, 0, 1])
    assert type(map_at_k([[0.0]], [1], gallery, labels, k=2)) is float


# --------------------------------------------------------------------------
# Against the reference
# --------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 10, 50])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_reference_gaussian(k, metric, dtype):
    for seed in range(3):
        q, ql, g, gl = gaussian_data(seed, dtype=dtype)
        expected = reference_map(q, ql, g, gl, k, metric)
        assert map_at_k(q, ql, g, gl, k=k, metric=metric) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("k", [1, 3, 10, 50])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_matches_reference_with_exact_ties(k, metric):
    # Ties in the reference are exact ties for the implementation too, and
    # both must break them by index.
    for seed in range(5):
        q, ql, g, gl = exact_tie_data(seed, metric)
        expected = reference_map(q, ql, g, gl, k, metric)
        assert map_at_k(q, ql, g, gl, k=k, metric=metric) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("empty", ["zero", "skip"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("k", [1, 3, 10, 50])
def test_matches_reference_empty_policies(empty, metric, k):
    q, ql, g, gl = gaussian_data(7, n_classes=6)
    gl = gl % 4                      # classes 4 and 5 are absent from the gallery
    assert set(ql) - set(gl)
    expected = reference_map(q, ql, g, gl, k, metric, empty)
    actual = map_at_k(q, ql, g, gl, k=k, metric=metric, empty=empty)
    assert actual == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("block_bytes", [1, 4 * 40 * 3, 4 * 40 * 7 + 5])
def test_block_size_does_not_change_result(block_bytes):
    q, ql, g, gl = integer_data(3, n_queries=20, dim=2, high=2)
    with flexsk.config_context(working_memory=block_bytes / 2 ** 20):
        assert map_at_k(q, ql, g, gl, k=5) == pytest.approx(reference_map(q, ql, g, gl, 5))


class ScoreBlocks(torch.Tensor):
    """Embeddings that record the shape of every matrix product computed from them: the
    blocks of query-to-gallery scores that map_at_k holds at once."""

    PRODUCTS = {torch.addmm, torch.mm, torch.matmul, torch.einsum, torch.cdist,
                torch.Tensor.addmm, torch.Tensor.mm, torch.Tensor.matmul,
                torch.Tensor.__matmul__}
    shapes = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        result = super().__torch_function__(func, types, args, kwargs)
        if func in cls.PRODUCTS and result.dim() == 2:
            cls.shapes.append(tuple(result.shape))
        return result


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_blocks_respect_the_memory_budget(metric):
    q, ql, g, gl = gaussian_data(0, n_queries=50, n_gallery=40, dtype=np.float32)
    ScoreBlocks.shapes = []
    with flexsk.config_context(working_memory=4 * 40 * 8 / 2 ** 20):  # 8 float32 rows
        watched = map_at_k(torch.as_tensor(q).as_subclass(ScoreBlocks), ql,
                           torch.as_tensor(g).as_subclass(ScoreBlocks), gl, k=3, metric=metric)
    assert ScoreBlocks.shapes == [(8, 40)] * 6 + [(2, 40)]
    assert watched == map_at_k(q, ql, g, gl, k=3, metric=metric)


# --------------------------------------------------------------------------
# Tie-breaking by gallery index
# --------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_duplicate_gallery_vectors_rank_by_index(metric):
    point = [2.0, 0.0, 0.0, 0.0]
    far = [0.0, 0.0, 4.0, 0.0]
    # 20 copies of `point` whose relevant items come last, then far relevant ones.
    gallery = np.array([point] * 20 + [far] * 3, dtype=np.float32)
    labels = np.array([0] * 15 + [1] * 5 + [1] * 3)
    query = np.array([[2.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    # The tie between the 20 copies crosses the cut at k = 3 and k = 10:
    # the lowest indices (class 0) must win, whatever topk picks.
    assert map_at_k(query, [1], gallery, labels, k=3, metric=metric) == 0.0
    assert map_at_k(query, [0], gallery, labels, k=3, metric=metric) == 1.0
    assert map_at_k(query, [0], gallery, labels, k=15, metric=metric) == 1.0
    # k = 20: the 5 relevant copies sit at ranks 16..20, R = 8.
    expected = sum(h / (15 + h) for h in range(1, 6)) / 8
    assert map_at_k(query, [1], gallery, labels, k=20, metric=metric) == pytest.approx(expected)
    # Reversing the labels of the copies reverses the outcome.
    flipped = np.concatenate([labels[:20][::-1], labels[20:]])
    assert map_at_k(query, [1], gallery, flipped, k=3, metric=metric) == 1.0


def test_duplicates_many_queries_match_reference():
    rng = np.random.default_rng(11)
    base = rng.integers(-3, 4, (6, 4)).astype(np.float32)
    gallery = base[rng.integers(0, 6, 60)]               # each vector ~10 times
    labels = rng.integers(0, 3, 60)
    queries = np.concatenate([base, rng.integers(-3, 4, (10, 4)).astype(np.float32)])
    query_labels = rng.integers(0, 3, len(queries))
    for k in (1, 4, 9, 25, 100):
        expected = reference_map(queries, query_labels, gallery, labels, k)
        assert map_at_k(queries, query_labels, gallery, labels, k=k) == pytest.approx(expected)


def test_cosine_zero_vectors_are_at_distance_one():
    # Exactly representable after normalisation, so the ties below are exact.
    gallery = np.array([[0, 0], [0, 2], [2, 0], [0, 0], [-4, 0]], dtype=np.float32)
    labels = np.array([1, 0, 0, 0, 1])
    # Query along x: [2, 0] first (sim 1), then zero vectors and [0, 2] all at
    # distance 1, by index 0, 1, 3; [-4, 0] last.
    ranked = [0, 1, 0, 0, 1]
    for k in (1, 2, 3, 5):
        expected = reference_ap(ranked, 1, 2, k)
        assert map_at_k([[3.0, 0.0]], [1], gallery, labels, k=k, metric="cosine") == \
            pytest.approx(expected)
    # A zero query is at distance 1 from everything: gallery order.
    assert map_at_k([[0.0, 0.0]], [1], gallery, labels, k=2, metric="cosine") == 0.5
    assert map_at_k([[0.0, 0.0]], [0], gallery, labels, k=2, metric="cosine") == 0.5 / 2


# --------------------------------------------------------------------------
# Property tests
# --------------------------------------------------------------------------
@st.composite
def integer_problems(draw, max_gallery=25, max_queries=8, absent_class=False):
    dim = draw(st.integers(1, 4))
    n_gallery = draw(st.integers(1, max_gallery))
    n_queries = draw(st.integers(1, max_queries))
    coords = st.integers(-5, 5)
    gallery = draw(hnp.arrays(np.float32, (n_gallery, dim), elements=coords))
    queries = draw(hnp.arrays(np.float32, (n_queries, dim), elements=coords))
    n_classes = draw(st.integers(1, 4))
    gallery_labels = draw(hnp.arrays(np.int64, n_gallery, elements=st.integers(0, n_classes - 1)))
    query_labels = draw(hnp.arrays(np.int64, n_queries, elements=st.integers(0, n_classes - 1)))
    if absent_class:   # class n_classes is never in the gallery
        query_labels[draw(st.lists(st.integers(0, n_queries - 1), min_size=1))] = n_classes
    k = draw(st.integers(1, 30))
    return queries, query_labels, gallery, gallery_labels, k


@SETTINGS
@given(integer_problems(), st.sampled_from(["euclidean", "cosine"]))
def test_property_within_unit_interval(problem, metric):
    q, ql, g, gl, k = problem
    value = map_at_k(q, ql, g, gl, k=k, metric=metric, empty="zero")
    assert 0.0 <= value <= 1.0


@SETTINGS
@given(integer_problems())
def test_property_matches_reference_on_integers(problem):
    q, ql, g, gl, k = problem
    expected = reference_map(q, ql, g, gl, k, empty="zero")
    assert map_at_k(q, ql, g, gl, k=k, empty="zero") == pytest.approx(expected, abs=1e-12)


@SETTINGS
@given(st.data(), st.randoms(use_true_random=False))
def test_property_gallery_permutation_invariance(data, random):
    # 1D without ties by construction: gallery at distinct g = 1 (mod 4), queries
    # at even q, so |q - g1| = |q - g2| would need g1 + g2 = 2q = 0 (mod 4).
    values = data.draw(hnp.arrays(np.int64, st.integers(1, 25), elements=st.integers(-50, 50),
                                  unique=True))
    gallery = (4 * values + 1).astype(np.float32)[:, None]
    queries = (2 * data.draw(hnp.arrays(np.int64, st.integers(1, 8),
                                        elements=st.integers(-100, 100)))).astype(np.float32)
    gl = data.draw(hnp.arrays(np.int64, len(gallery), elements=st.integers(0, 2)))
    ql = data.draw(hnp.arrays(np.int64, len(queries), elements=st.integers(0, 2)))
    k = data.draw(st.integers(1, 30))
    permutation = list(range(len(gallery)))
    random.shuffle(permutation)
    before = map_at_k(queries[:, None], ql, gallery, gl, k=k, empty="zero")
    after = map_at_k(queries[:, None], ql, gallery[permutation], gl[permutation], k=k,
                     empty="zero")
    assert after == pytest.approx(before, abs=1e-12)


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.sampled_from(["euclidean", "cosine"]))
def test_property_gallery_permutation_invariance_continuous(seed, k, metric):
    q, ql, g, gl = gaussian_data(seed, n_queries=5, n_gallery=30)
    permutation = np.random.default_rng(seed + 1).permutation(len(g))
    before = map_at_k(q, ql, g, gl, k=k, metric=metric, empty="zero")
    after = map_at_k(q, ql, g[permutation], gl[permutation], k=k, metric=metric, empty="zero")
    assert after == pytest.approx(before, abs=1e-12)


@SETTINGS
@given(st.lists(st.integers(1, 12), min_size=1, max_size=5), st.integers(1, 20),
       st.integers(0, 2**32 - 1), st.sampled_from(["euclidean", "cosine"]))
def test_property_separated_clusters_score_one(class_sizes, k, seed, metric):
    # Class c lives near 100 * e_c (plus offsets in [-1, 1]): every item of a
    # query's class is nearer, in both metrics, than any item of another class.
    rng = np.random.default_rng(seed)
    dim = len(class_sizes)
    labels = np.repeat(np.arange(dim), class_sizes)
    gallery = 100 * np.eye(dim)[labels] + rng.uniform(-1, 1, (len(labels), dim))
    query_labels = rng.integers(0, dim, 6)
    queries = 100 * np.eye(dim)[query_labels] + rng.uniform(-1, 1, (6, dim))
    order = rng.permutation(len(labels))
    value = map_at_k(queries, query_labels, gallery[order], labels[order], k=k, metric=metric)
    assert value == pytest.approx(1.0, abs=1e-12)


@SETTINGS
@given(integer_problems(max_queries=10, absent_class=True),
       st.sampled_from(["euclidean", "cosine"]))
def test_property_empty_policies(problem, metric):
    q, ql, g, gl, k = problem
    present = np.isin(ql, gl)
    assert not present.all()
    with pytest.raises(ValueError, match="no item in the gallery"):
        map_at_k(q, ql, g, gl, k=k, metric=metric)
    zero = map_at_k(q, ql, g, gl, k=k, metric=metric, empty="zero")
    if not present.any():
        assert zero == 0.0
        with pytest.raises(ValueError, match="skipped"):
            map_at_k(q, ql, g, gl, k=k, metric=metric, empty="skip")
        return
    skip = map_at_k(q, ql, g, gl, k=k, metric=metric, empty="skip")
    only_present = map_at_k(q[present], ql[present], g, gl, k=k, metric=metric)
    assert skip == pytest.approx(only_present, abs=1e-12)
    assert zero == pytest.approx(skip * present.sum() / len(ql), abs=1e-12)


def test_raise_names_absent_classes():
    gallery, labels = line_gallery(["cat", "dog"])
    with pytest.raises(ValueError, match=r"\['bird', 'fish'\]"):
        map_at_k([[0.0]] * 4, ["fish", "cat", "bird", "fish"], gallery, labels)


# --------------------------------------------------------------------------
# Input types
# --------------------------------------------------------------------------
def test_torch_and_numpy_inputs_agree():
    q, ql, g, gl = gaussian_data(5, dtype=np.float32)
    expected = reference_map(q, ql, g, gl, 4, "cosine")
    tensors = (torch.from_numpy(q).requires_grad_(), torch.from_numpy(ql),
               torch.from_numpy(g), torch.from_numpy(gl))
    assert map_at_k(*tensors, k=4, metric="cosine") == pytest.approx(expected)
    assert map_at_k(q, list(ql), torch.from_numpy(g).double(), gl, k=4, metric="cosine") == \
        pytest.approx(expected)
    assert map_at_k(q.tolist(), ql, g.tolist(), gl, k=4, metric="cosine") == \
        pytest.approx(expected)


def test_string_and_mixed_labels():
    q, ql, g, gl = gaussian_data(6)
    names = np.array(["ant", "bee", "cow", "dog"], dtype=object)
    expected = map_at_k(q, ql, g, gl, k=5)
    assert map_at_k(q, names[ql], g, names[gl], k=5) == expected
    assert map_at_k(q, list(names[ql]), g, names[gl].astype(str), k=5) == expected


def test_integer_embeddings_and_numpy_integer_k():
    q, ql, g, gl = integer_data(2)
    expected = reference_map(q, ql, g, gl, 4)
    assert map_at_k(q.astype(np.int64), ql, g.astype(np.int32), gl, k=np.int64(4)) == \
        pytest.approx(expected)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_cuda_inputs_match_reference(metric):
    def cuda(x):
        return torch.from_numpy(np.asarray(x)).cuda()

    for seed in range(3):
        q, ql, g, gl = gaussian_data(seed, dtype=np.float32)
        for k in (1, 3, 10, 50):
            expected = reference_map(q, ql, g, gl, k, metric)
            assert map_at_k(cuda(q), ql, cuda(g), cuda(gl), k=k, metric=metric) == \
                pytest.approx(expected)
    # Exact ties (integers; duplicates; zero vectors) broken by index on the GPU too.
    with flexsk.config_context(working_memory=4 * 40 * 7 / 2 ** 20):
        for seed in range(3):
            q, ql, g, gl = exact_tie_data(seed, metric)
            for k in (1, 3, 10, 50):
                expected = reference_map(q, ql, g, gl, k, metric)
                assert map_at_k(cuda(q), ql, cuda(g), gl, k=k, metric=metric) == \
                    pytest.approx(expected)
    with pytest.raises(ValueError, match="different devices"):
        map_at_k(cuda(q), ql, torch.from_numpy(g), gl)


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------
Q = np.zeros((3, 2))
QL = np.array([0, 1, 0])
G = np.ones((4, 2))
GL = np.array([0, 1, 1, 0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(query_embeddings=np.zeros(3)), "2D"),
    (dict(gallery_embeddings=np.zeros((4, 2, 1))), "2D"),
    (dict(query_embeddings=np.zeros((0, 2)), query_labels=[]), "empty"),
    (dict(gallery_embeddings=np.zeros((0, 2)), gallery_labels=[]), "empty"),
    (dict(gallery_embeddings=np.zeros((4, 0))), "empty"),
    (dict(gallery_embeddings=np.ones((4, 3))), "features"),
    (dict(query_labels=[0, 1]), "query_labels has 2 labels"),
    (dict(gallery_labels=[[0, 1, 1, 0]]), "1D"),
    (dict(gallery_labels=[0, 1, 1]), "gallery_labels has 3 labels"),
    (dict(query_embeddings=np.array([[0, 0], [np.nan, 0], [0, 0]])), "NaN or infinity"),
    (dict(gallery_embeddings=np.array([[0, 0], [0, np.inf], [0, 0], [1, 1]])),
     "NaN or infinity"),
    (dict(query_embeddings=Q.astype(np.float32),
          gallery_embeddings=np.full((4, 2), 1e30, dtype=np.float32)), "too large"),
    (dict(query_embeddings=np.full((3, 2), 1e200)), "too large"),
    (dict(query_embeddings=np.array([["a", "b"]] * 3)), "real numbers"),
    (dict(query_embeddings=torch.zeros(3, 2, dtype=torch.bool)), "real numbers"),
    (dict(k=0), r"'k' parameter of map_at_k must be an int in the range \[1, inf\)"),
    (dict(k=-2), r"'k' parameter of map_at_k must be an int in the range \[1, inf\)"),
    (dict(k=2.0), "'k' parameter of map_at_k must be an int"),
    (dict(k=True), "'k' parameter of map_at_k must be an int"),
    (dict(k="3"), "'k' parameter of map_at_k must be an int"),
    (dict(metric="manhattan"), "'metric' parameter of map_at_k must be a str among"),
    (dict(empty="ignore"), "'empty' parameter of map_at_k must be a str among"),
    (dict(query_labels=[0, 1, 2]), r"no item in the gallery: \[2\]"),
])
def test_validation(kwargs, match):
    arguments = dict(query_embeddings=Q, query_labels=QL, gallery_embeddings=G,
                     gallery_labels=GL)
    arguments.update(kwargs)
    options = {name: arguments.pop(name) for name in ("k", "metric", "empty") if name in arguments}
    with pytest.raises(ValueError, match=match):
        map_at_k(*arguments.values(), **options)


def test_skip_everything_raises():
    with pytest.raises(ValueError, match="skipped"):
        map_at_k(Q, [5, 6, 7], G, GL, empty="skip")
    assert map_at_k(Q, [5, 6, 7], G, GL, empty="zero") == 0.0


@pytest.mark.parametrize("query, gallery", [
    (["0", "1"], [0, 1, 0]), ([0, 1], np.array(["0", "1", "0"])),
    (np.array([0, 1], dtype=object), np.array(["0", "1", "0"], dtype=object)),
])
def test_string_labels_never_match_numbers(query, gallery):
    q, g = np.eye(2), np.eye(3)[:, :2]
    with pytest.raises(ValueError, match="both be numbers or both be strings"):
        map_at_k(q, query, g, gallery, k=2)
    # python ints in an object array are numbers
    assert map_at_k(q, np.array([0, 1], dtype=object), g, [0, 1, 0], k=1) == 1.0
