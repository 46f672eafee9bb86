"""FlexTuner's ``scoring``: a scikit-learn scorer that ranks candidates on validation data.

A scorer is called as scikit-learn calls it, ``scorer(estimator, X, y)``,
with an *estimator view* of one candidate: its ``predict``, ``predict_proba``,
``decision_function`` and ``transform`` answer from the outputs (and, when
asked, the embeddings) of the validation pass the training context already
makes, through the cached prefix where there is one, so that scoring a
candidate costs no second pass over the whole network. ``X`` is the column
of the validation samples' positions, which the view reads; ``y`` their
labels. :func:`flexsk.metrics.make_retrieval_scorer` works too: the view
embeds its source gallery with the pretrained net, once per fit.
"""

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import get_scorer

from . import _forward, _surgery

__all__ = ["ValidationScoring", "Embedding", "scorer_of"]


def scorer_of(scoring):
    """The scorer callable of FlexTuner's ``scoring`` (a name or a callable)."""
    if isinstance(scoring, str):
        return get_scorer(scoring)
    if not callable(scoring):
        raise TypeError(f"scoring must be a scorer name (sklearn.metrics.get_scorer_names()) "
                        f"or a callable scorer(estimator, X, y), got {scoring!r}.")
    return scoring


class Embedding:
    """How a candidate, and the pretrained net, embed inputs: the input of ``cut``.

    Parameters
    ----------
    cut : str
        The module whose input is the embedding (``embedding_unit``'s first).
    device : torch.device
    channels_last : bool
        Whether image inputs go in the channels-last memory format.
    batch_size : int
        Samples per forward pass.
    """

    def __init__(self, cut, device, channels_last, batch_size):
        self.cut = cut
        self.device = device
        self.channels_last = channels_last
        self.batch_size = batch_size

    def of_samples(self, module, samples):
        """Embeddings of the (validation) ``samples`` through ``module``."""
        with torch.no_grad():
            return np.concatenate([
                _forward.inputs(module, X, [self.cut])[self.cut].flatten(1).float().cpu().numpy()
                for X, _ in samples.eval_batches(self.batch_size)])

    def of_inputs(self, module, X):
        """Embeddings of arbitrary inputs ``X`` (an array or tensor) through ``module``."""
        out = []
        with torch.no_grad():
            for start in range(0, len(X), self.batch_size):
                batch = torch.as_tensor(np.asarray(X[start:start + self.batch_size]),
                                        dtype=torch.float32, device=self.device)
                if self.channels_last and batch.dim() == 4:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                out.append(_forward.inputs(module, batch, [self.cut])[self.cut]
                           .flatten(1).float().cpu().numpy())
        return np.concatenate(out)


class ValidationScoring:
    """A scorer applied to candidates' validation outputs (the context's ``scoring``).

    Parameters
    ----------
    scorer : callable
        ``scorer(estimator, X, y) -> float``, higher is better.
    classes : ndarray
        The labels of the target classes, in the order of the outputs.
    probabilities : bool
        Whether the net's outputs are probabilities (NLLLoss) rather than logits.
    embedding : Embedding
    """

    def __init__(self, scorer, classes, probabilities, embedding):
        self.scorer = scorer
        self.classes = classes
        self.probabilities = probabilities
        self.embedding = embedding
        self._fingerprints = {}
        self._pretrained_embeddings = {}

    def __getstate__(self):
        return {**self.__dict__, "_fingerprints": {}, "_pretrained_embeddings": {}}

    def score(self, ctx, module, samples, outputs, targets):
        """The scorer's value for ``module``, whose validation ``outputs`` (gathered
        over the target classes) on ``samples`` of labels ``targets`` are given."""
        view = CandidateOutputs(self, ctx, module, samples, outputs)
        positions = np.arange(len(targets)).reshape(-1, 1)
        value = self.scorer(view, positions, self.classes[targets.numpy()])
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"scoring={self.scorer!r} returned {value!r}; a scorer returns "
                            f"one number, higher is better.") from None
        if not math.isfinite(value):
            raise ValueError(
                f"scoring={self.scorer!r} returned {value} on the {len(targets)} validation "
                f"samples, which ranks nothing. A metric that needs every class in the "
                f"validation data (roc_auc, say) needs a larger validation set.")
        return value

    def embeddings(self, ctx, module, samples):
        """The embeddings of ``samples`` through ``module``. A module that starts after
        the cut (a suffix on cached unit inputs) left the embedding to the frozen
        pretrained prefix: the pretrained net's embeddings of the validation data,
        computed once per context."""
        cut = self.embedding.cut
        if cut in dict(module.named_modules()):
            return self.embedding.of_samples(module, samples)
        key = id(ctx.data.val)
        if key not in self._pretrained_embeddings:
            self._pretrained_embeddings[key] = self.embedding.of_samples(ctx.pretrained,
                                                                         ctx.data.val)
        return self._pretrained_embeddings[key]

    def fingerprint(self, ctx):
        key = id(ctx.pretrained)
        if key not in self._fingerprints:
            self._fingerprints[key] = (f"{_surgery.fingerprint(ctx.pretrained, ctx.head)}"
                                       f"@{self.embedding.cut}")
        return self._fingerprints[key]


class CandidateOutputs(ClassifierMixin, BaseEstimator):
    """One candidate, as a fitted classifier whose answers on the validation samples
    (the positions ``X`` its scorer is given) are its validation outputs."""

    def __init__(self, scoring=None, ctx=None, module=None, samples=None, outputs=None):
        self.scoring = scoring
        self.ctx = ctx
        self.module = module
        self.samples = samples
        self.outputs = outputs

    @property
    def classes_(self):
        return self.scoring.classes

    def __sklearn_is_fitted__(self):
        return True

    def fit(self, X, y=None):
        raise TypeError("A candidate scored during a fit is trained by the fit; it cannot be "
                        "fitted again.")

    def __repr__(self):
        return f"CandidateOutputs(n_samples={len(self.outputs)})"

    def _rows(self, X):
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != 1 or not np.issubdtype(X.dtype, np.integer) or (
                len(X) and (X.min() < 0 or X.max() >= len(self.outputs))):
            raise ValueError("During a fit, a scorer scores the validation data it is given: "
                             "the positions of the validation samples (the X it receives).")
        return X[:, 0]

    def decision_function(self, X):
        logits = self.outputs[self._rows(X)].double()
        if self.scoring.probabilities:
            logits = torch.log(logits.clamp_min(torch.finfo(logits.dtype).tiny))
        logits = logits.numpy()
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X):
        outputs = self.outputs[self._rows(X)].double()  # float64: log_loss clips at its eps
        if self.scoring.probabilities:
            return (outputs / outputs.sum(1, keepdim=True)).numpy()
        return torch.softmax(outputs, 1).numpy()

    def predict_log_proba(self, X):
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        return self.classes_[self.outputs[self._rows(X)].argmax(1).numpy()]

    def transform(self, X):
        rows = self._rows(X)
        return self.scoring.embeddings(self.ctx, self.module, self.samples)[rows]

    def pretrained_transform(self, X):
        return self.scoring.embedding.of_inputs(self.ctx.pretrained, X)

    def pretrained_fingerprint(self):
        return self.scoring.fingerprint(self.ctx)
