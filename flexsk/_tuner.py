"""FlexTuner: the estimator. Parameters, validation, fit orchestration, prediction."""

import contextlib
import copy
import math
import time
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, _fit_context, clone
from sklearn.model_selection import check_cv
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (check_array, check_consistent_length,
                                      check_is_fitted, column_or_1d, validate_data)
from skorch import NeuralNetClassifier
from torch import nn

from . import _surgery, adapters
from ._exceptions import SelectionWarning
from ._locks import forward_pass
from ._strategies import STRATEGIES
from ._training import (CrossValidation, Evaluation, FineTuning, FoldModules, Optimization,
                        Samples, SkorchClassifierLoss, Stopping, TargetData, describe, gather,
                        seed_for)
from ._units import resolve_units

__all__ = ["FlexTuner"]

_AUTOCAST_DTYPES = {"float32": None, "bfloat16": torch.bfloat16}
_PREDICT_BATCH_SIZE = 1024

#: ``patience="auto"``: wait this many epochs, and at least this many optimizer steps.
AUTO_PATIENCE_EPOCHS = 5
AUTO_PATIENCE_STEPS = 20

#: Refit trains for the selection run's best number of optimizer steps ("steps") or of
#: epochs ("epochs"); see the user guide for the measurement behind the choice.
REFIT_LENGTH = "steps"


class FlexTuner(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Fine-tune the one unit of a pretrained network that the target data needs.

    Flex-tuning (Royer & Lampert, WACV 2020) adapts a network pretrained on a
    *source* domain to a visually different target domain with the same
    classes, by fine-tuning exactly one *unit* (a layer or block) and choosing
    which one from validation accuracy.

    Parameters
    ----------
    base_net : skorch.NeuralNetClassifier
        The pretrained network. Either initialized or fitted (its ``module_``
        holds the pretrained weights), or unfitted and holding an
        ``nn.Module`` instance (that instance's weights are the pretrained
        weights; lazy modules are materialized by a forward pass). It is
        never modified. Fine-tuning uses its optimizer class and
        ``optimizer__*`` settings, criterion, batch size, learning rate and
        device.
    units : "auto", list of str or dict, default="auto"
        How the network splits into units. ``"auto"``: the top-level child
        modules that own parameters. A list: one unit per (dotted) module
        name, e.g. ``["layer1.0", "fc"]``. A dict: named groups, e.g.
        ``{"features": ["conv1", "conv2"], "head": ["fc1", "fc2"]}``. Units
        are ordered as the forward pass runs them. Modules without
        parameters belong to no unit. ``"all"`` and ``"ss"`` are reserved.
    strategy : {"fast", "flex", "faster", "rgn", "halving", "ft-all", "ft-fc", \
"ft-ss"}, default="fast"
        ``"flex"`` (Algorithm 1) tunes every unit on its own and all units
        together, and keeps the best on validation. ``"fast"`` (Algorithm 2)
        tunes all units, scores proxy nets (the pretrained net with one unit
        from ft-all), tunes the best proxy's unit from the pretrained weights,
        and keeps it unless ft-all validates strictly better. ``"faster"``
        (Algorithm 3) does the same with a single epoch of ft-all and always
        returns the tuned unit. Beyond the paper: ``"rgn"`` ranks units by
        their relative gradient norm ``||grad|| / ||weights||`` at the
        pretrained weights on a few training minibatches (Auto-RGN of
        surgical fine-tuning, Lee et al., ICLR 2023; no training, at most one
        epoch of ft-all's passes) and tunes the top unit. ``"halving"`` runs
        successive halving over flex's L + 1 candidates (see
        ``halving_factor``). Baselines: ``"ft-all"`` (every parameter),
        ``"ft-fc"`` (the last ``n_fc_units`` units) and ``"ft-ss"`` (scale
        and shift, trained with the last unit).
    n_fc_units : int, default=1
        Number of last units that ``"ft-fc"`` tunes: the paper's ft-fc (1)
        and ft-fc (2).
    max_units : int, default=1
        Most units the returned model tunes, for the strategies that end on
        a single unit (flex, fast, faster, rgn, halving). Above 1, once the
        strategy has found its unit, every other unit is tried alongside it,
        each pair trained from the pretrained weights (L - 1 more trainings,
        parallel under ``n_jobs``); the best pair (the earliest added unit on
        ties) is kept if its validation accuracy beats the single unit's by
        more than ``pair_margin``, and the step repeats up to ``max_units``
        units. Nothing is tried when ``"all"`` wins. The baselines (ft-all,
        ft-fc, ft-ss) tune a fixed selection: ``max_units > 1`` with them
        raises a ValueError.
    pair_margin : float, default=0.01
        The validation accuracy a larger selection must gain, strictly, over
        the current one to be kept with ``max_units > 1`` (0.01: one point of
        accuracy, 2 images of a 200-image validation set).
    halving_factor : float, default=3
        ``"halving"``: each rung keeps the best ``ceil(n / halving_factor)``
        of its ``n`` candidates (at least one fewer) and multiplies their
        epochs by ``halving_factor``, as ``factor`` in
        :class:`sklearn.model_selection.HalvingGridSearchCV`. The defaults
        (3 and ``halving_min_epochs=3``) were the best trade-off of those
        tried on the digits benchmark (``docs/beyond.md``).
    halving_min_epochs : int, default=3
        ``"halving"``: epochs of the first rung, in which all L + 1
        candidates train (``min_resources`` of HalvingGridSearchCV). Rung
        ``i`` trains its candidates up to ``halving_min_epochs *
        halving_factor ** i`` epochs in total (at most ``max_epochs``), from
        their best weights so far, with early stopping off; the last
        candidate left trains on with early stopping for the rest of
        ``max_epochs``. Ties go to the earliest unit; a unit beats ``"all"``.
        Cost: with ``n = L + 1``, ``f = halving_factor`` and ``r0 =
        halving_min_epochs``, rung 0 costs ``n * r0`` candidate-epochs and
        each of the about ``log_f(n) - 1`` later rungs about ``n * r0 * (f -
        1) / f``, plus the last candidate's early-stopped run; flex costs
        ``n`` early-stopped runs. Halving trains one candidate at a time.
    pixel_adapter : {None, "color", "spatial", "unet", "auto"}, default=None
        Add pixel-level adapter units before the pretrained net (the paper's
        Section 5.4; see :mod:`flexsk.adapters`), each the identity until
        trained: ``"color"``, a 1x1 convolution (colour-space shifts);
        ``"spatial"``, a spatial transformer (geometric shifts); ``"unet"``,
        a small residual U-Net (blur, noise); ``"auto"``, all three in that
        order, each its own unit. Adapter units are named
        ``"adapter_color"``, ``"adapter_spatial"``, ``"adapter_unet"`` and
        come first in ``units_``; they take part in every strategy like any
        unit (but ``"rgn"`` scores them 0 and never picks them: at the
        identity their last layer is zero, so it has no relative gradient
        norm, and no gradient reaches their other weights), and ``"all"``
        (ft-all, and the ft-all that fast and faster take their proxies
        from) trains them too, so the paper's ft-all
        baseline is the one with ``pixel_adapter=None``. Needs image inputs
        ``(n_samples, C, H, W)`` with ``H, W >= 8``. ``net_`` holds the
        adapted network (:class:`flexsk.adapters.AdaptedNet`).
    validation_fraction : float, default=0.2
        Fraction of each class held out for validation when ``fit`` gets no
        ``X_val``. Needs at least 2 samples per class.
    max_epochs : int, default=100
        Most epochs of any one training run.
    patience : int or None, default=5
        Stop when validation accuracy has not strictly improved for this
        many epochs, then restore the best epoch. ``None`` trains exactly
        ``max_epochs`` epochs and still restores the best.
    lr : float or None, default=None
        Fine-tuning learning rate; None uses the base net's ``lr``. The paper
        fine-tunes with Adam at 1e-3 for small nets and 1e-4 for large ones,
        lower than for pretraining.
    batch_size : int or None, default=None
        None uses the base net's ``batch_size``.
    keep_candidates : bool, default=False
        Keep every trained candidate in ``candidates_``.
    embedding_unit : str or None, default=None
        The unit whose input :meth:`transform` returns. None: the last unit.
    activation_cache : "auto", bool, default="auto"
        When only units from ``l`` onward are tuned, units before ``l`` are
        frozen and in eval mode, so their outputs on the training and
        validation data never change: they are computed once and only the
        rest of the net runs each epoch. Proxy nets likewise share one
        pretrained pass. ``"auto"`` caches when the cached activations fit in
        ``activation_cache_bytes``; ``True`` always caches; ``False`` never
        does (use it when your data pipeline augments). Results are the same
        either way; nets that cannot be cut (see Notes) run uncached.
    activation_cache_bytes : int, default=2**30
        Memory budget of the activation cache for ``activation_cache="auto"``
        (1 GiB).
    precision : {"float32", "bfloat16"}, default="float32"
        ``"bfloat16"`` runs forward passes (training, validation, prediction)
        under :func:`torch.autocast` with bfloat16: faster on recent GPUs,
        slower on most CPUs. Weights and optimizer state stay float32.
    channels_last : bool, default=False
        Keep image tensors and the network in the channels-last memory
        format, which is faster for convolutions on recent GPUs, and can be
        on CPUs too (the performance page measures both). Float rounding
        differs from the default format's.
    n_jobs : int or None, default=None
        Number of parallel jobs for independent training runs (flex's L + 1
        candidates), through :mod:`joblib`. None means 1 unless in a
        :func:`joblib.parallel_config` context; -1 uses all cores. Any
        process-based joblib backend works, e.g. loky (the default) or a dask
        cluster with ``joblib.parallel_config(backend="dask")``; backends that
        run tasks in threads of this process train the candidates one at a
        time, with a warning. See Notes on threads.
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split, shuffling, dropout and lazy-module
        initialization.
    verbose : int, default=0
        1 shows a progress bar over training runs (its total is an upper
        bound where the schedule can stop early: halving, ``max_units``);
        2 also prints each epoch of the runs trained in this process (not of
        those that ``n_jobs`` sends to worker processes).

    Attributes
    ----------
    units_ : list of str
        Unit names in forward order, pixel adapters first.
    selected_unit_ : str or tuple of str
        The returned model: a unit name, a tuple of unit names in forward
        order (ft-fc with several units, or a combination kept with
        ``max_units > 1``), ``"all"`` (ft-all) or ``"ss"`` (ft-ss).
    proxy_scores_ : dict
        Unit name -> selection score, for every unit in forward order: the
        proxy net's validation accuracy (fast, faster), the tuned
        candidate's (flex), the relative gradient norm (rgn), or the
        validation accuracy after the last rung the unit trained in
        (halving). Empty for baselines.
    validation_scores_ : dict
        Validation accuracy of every model that could have been returned,
        keyed like ``selected_unit_``. Faster's single epoch of ft-all is
        left out.
    n_epochs_ : dict
        Epochs trained, with the same keys as ``validation_scores_``.
    fit_time_ : float
        Wall-clock seconds of ``fit``.
    candidates_ : dict
        With ``keep_candidates=True``: the trained modules, keyed like
        ``validation_scores_``.
    net_ : skorch.NeuralNetClassifier
        An initialized net holding the tuned module. Its own ``predict``
        returns output indices over all outputs; use :meth:`predict`.
    classes_ : ndarray of shape (n_classes,)
        The target labels, indices into the pretrained net's outputs.
    n_features_in_ : int
        Size of the second input axis (channels for images).

    See Also
    --------
    flexsk.metrics.make_retrieval_scorer : mAP@k of the tuned embeddings.

    Notes
    -----
    Frozen units run in eval mode during training, so BatchNorm statistics
    and dropout outside the tuned units do not move. The returned network
    differs from the pretrained one only inside the selected unit(s).

    With the same ``random_state`` and the same torch thread count, fits on
    CPU are reproducible; float rounding differs across thread counts. Every
    training run draws its seed from ``random_state`` and its own name, so
    ``n_jobs`` does not change which unit is selected. joblib's default
    (loky) workers run ``cpu_count // n_jobs`` torch threads each, so that
    processes times threads do not oversubscribe the cores; FlexTuner never
    calls :func:`torch.set_num_threads` itself. For bit-identical results
    across ``n_jobs``, give the parent the workers' thread count, e.g.
    ``torch.set_num_threads(1)`` with ``n_jobs=2`` on 2 cores.

    Activation caching cuts the network into a frozen prefix and a trainable
    suffix with :mod:`torch.fx`, keeping units whole. A cut before a unit is
    used only where exactly one tensor, the unit's input, flows from the
    prefix to the rest of the net, and where the cut net reproduces the
    original on a probe batch. Elsewhere training runs the full network with
    frozen parameters.

    Examples
    --------
    >>> from flexsk import FlexTuner
    >>> from flexsk.datasets import make_digits_shift
    >>> from flexsk.zoo import load_source_net
    >>> net = load_source_net("conv4")
    >>> X, y = make_digits_shift("blur", split="train", return_X_y=True)
    >>> tuner = FlexTuner(net, strategy="fast", random_state=0).fit(X, y)
    >>> tuner.selected_unit_ in tuner.units_ + ["all"]
    True
    """

    _parameter_constraints = {
        "base_net": [NeuralNetClassifier],
        "units": [StrOptions({"auto"}), list, tuple, dict],
        "strategy": [StrOptions(set(STRATEGIES))],
        "n_fc_units": [Interval(Integral, 1, None, closed="left")],
        "max_units": [Interval(Integral, 1, None, closed="left")],
        "pair_margin": [Interval(Real, 0, 1, closed="both")],
        "halving_factor": [Interval(Real, 1, None, closed="neither")],
        "halving_min_epochs": [Interval(Integral, 1, None, closed="left")],
        "pixel_adapter": [StrOptions({"color", "spatial", "unet", "auto"}), None],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "refit": ["boolean"],
        "cv": ["cv_object", None],
        "lr": [Interval(Real, 0, None, closed="neither"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "keep_candidates": ["boolean"],
        "embedding_unit": [str, None],
        "activation_cache": [StrOptions({"auto"}), "boolean"],
        "activation_cache_bytes": [Interval(Integral, 0, None, closed="left")],
        "precision": [StrOptions({"float32", "bfloat16"})],
        "channels_last": ["boolean"],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, base_net, *, units="auto", strategy="fast", n_fc_units=1,
                 max_units=1, pair_margin=0.01, halving_factor=3, halving_min_epochs=3,
                 pixel_adapter=None,
                 validation_fraction=0.2, max_epochs=100, patience="auto", refit=True, cv=None,
                 lr=None,
                 batch_size=None, keep_candidates=False, embedding_unit=None,
                 activation_cache="auto", activation_cache_bytes=2 ** 30,
                 precision="float32", channels_last=False, n_jobs=None, random_state=None,
                 verbose=0):
        self.base_net = base_net
        self.units = units
        self.strategy = strategy
        self.n_fc_units = n_fc_units
        self.max_units = max_units
        self.pair_margin = pair_margin
        self.halving_factor = halving_factor
        self.halving_min_epochs = halving_min_epochs
        self.pixel_adapter = pixel_adapter
        self.validation_fraction = validation_fraction
        self.max_epochs = max_epochs
        self.patience = patience
        self.refit = refit
        self.cv = cv
        self.lr = lr
        self.batch_size = batch_size
        self.keep_candidates = keep_candidates
        self.embedding_unit = embedding_unit
        self.activation_cache = activation_cache
        self.activation_cache_bytes = activation_cache_bytes
        self.precision = precision
        self.channels_last = channels_last
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # -- sklearn protocol ----------------------------------------------------------------

    def __sklearn_clone__(self):
        # The default clone would re-create base_net from its class and lose the
        # pretrained weights; a deep copy keeps them and isolates the user's net.
        params = self.get_params(deep=False)
        base_net = copy.deepcopy(params.pop("base_net"))
        return type(self)(base_net, **{k: clone(v, safe=False) for k, v in params.items()})

    def __sklearn_is_fitted__(self):
        return hasattr(self, "net_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # -- fit ---------------------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, *, X_val=None, y_val=None):
        """Select and fine-tune a unit of the pretrained network.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, ...)
            Target training inputs, shaped as the base net takes them:
            ``(n_samples, C, H, W)`` for images, ``(n_samples, n_features)``
            for tabular nets. Any real dtype; cast to float32.
        y : array-like of shape (n_samples,)
            Integer labels, indices into the pretrained net's outputs.
        X_val, y_val : array-like, optional
            A fixed validation set. When given, it replaces the internal
            split (as in :meth:`sklearn.ensemble.HistGradientBoostingClassifier.fit`).

        Returns
        -------
        self : FlexTuner

        Notes
        -----
        A fit that raises leaves the estimator as it was before the call:
        fitted with its previous result, or unfitted.
        """
        state = dict(self.__dict__)
        try:
            return self._fit(X, y, X_val, y_val)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(state)
            raise

    def _fit(self, X, y, X_val, y_val):
        started = time.perf_counter()
        X, y = self._validate_training_data(X, y)
        if (X_val is None) != (y_val is None):
            raise ValueError("Pass both X_val and y_val, or neither.")
        base_seed = int(check_random_state(self.random_state).randint(2 ** 31 - 1))

        device = _device_of(self.base_net)
        pretrained = _pretrained_module(self.base_net).to(device)
        if self.channels_last:
            pretrained = pretrained.to(memory_format=torch.channels_last)
        n_outputs = self._probe(pretrained, X, device, base_seed)
        self.classes_ = _check_labels(np.unique(y), n_outputs, "y")
        if len(self.classes_) < 2:
            raise ValueError(
                f"The number of classes has to be greater than one; got 1 class "
                f"({self.classes_[0]!r}) in y. Selection needs at least two classes.")

        if X_val is None:
            train, val = _stratified_split(y, self.validation_fraction,
                                           np.random.RandomState(base_seed))
            X_train, y_train, X_val, y_val = X[train], y[train], X[val], y[val]
        else:
            X_train, y_train = X, y
            X_val, y_val = self._validate_validation_data(X_val, y_val)

        net = _net_like(self.base_net, pretrained)
        units = resolve_units(pretrained, self.units, self._tensor(X[:2], device))
        if self.pixel_adapter is not None:
            pretrained, units = adapters.attach(pretrained, units, self.pixel_adapter,
                                                X.shape[1:], seed_for(base_seed, "adapters"))
        self._check_unit_options(units)
        classes = torch.as_tensor(self.classes_, dtype=torch.long, device=device)
        train = Samples(self._tensor(X_train, device), self._encode(y_train, device))
        val = Samples(self._tensor(X_val, device), self._encode(y_val, device))
        strategy = STRATEGIES[self.strategy]
        options = {name: getattr(self, name) for name in strategy.options}
        if strategy.single_unit:
            options.update(max_units=self.max_units, pair_margin=self.pair_margin)
        folds = None
        if self.cv is not None:
            if not self.refit:
                raise ValueError("cv scores each candidate on several folds, which gives no "
                                 "single selection-run model: it needs refit=True.")
            labelled = train.concat(val)
            y_all = np.concatenate([y_train, y_val])
            folds = list(check_cv(self.cv, y_all, classifier=True).split(
                np.zeros((len(y_all), 1)), y_all))
        n_runs = strategy.total_runs(len(units), **options) * (len(folds) if folds else 1)
        n_runs += 1 if self.refit else 0
        with _progress(self.verbose, n_runs, self.strategy) as progress:
            settings = dict(progress=progress, log=_write if self.verbose >= 2 else None,
                            cache=self.activation_cache,
                            cache_bytes=self.activation_cache_bytes, n_jobs=self.n_jobs)

            def fine_tuning(train, val, seed):
                return FineTuning(pretrained, units, TargetData(train, val, classes),
                                  self._optimization(net, len(train)), seed, **settings)

            if folds is None:
                ft = fine_tuning(train, val, base_seed)
            else:
                ft = CrossValidation(
                    [fine_tuning(labelled.subset(t), labelled.subset(v),
                                 seed_for(base_seed, ("fold", i)))
                     for i, (t, v) in enumerate(folds)],
                    fine_tuning(labelled, None, base_seed))
            optimization = ft.optimization
            outcome = strategy(ft, **options)
            _check_selection(ft, outcome, self.strategy, optimization.lr)
            selected = outcome.model
            model, refit_epochs = selected.module, None  # cv needs refit: see above
            refit_started = time.perf_counter()
            if self.refit:
                model, refit_epochs = _refit(ft, outcome)
            refit_time = time.perf_counter() - refit_started

        self._units = units
        self._pretrained = pretrained
        self.units_ = [unit.name for unit in units]
        self.selected_unit_ = outcome.selected
        proxies = outcome.proxy_scores
        self.proxy_scores_ = {k: _accuracy_of(v) for k, v in proxies.items()}
        self.proxy_losses_ = {k: v.loss for k, v in proxies.items() if isinstance(v, Evaluation)}
        self.validation_scores_ = {k: t.val_score for k, t in outcome.tuned.items()}
        self.validation_losses_ = {k: t.val_loss for k, t in outcome.tuned.items()}
        self.n_epochs_ = {k: t.n_epochs for k, t in outcome.tuned.items()}
        self.best_epochs_ = {k: t.best_epoch for k, t in outcome.tuned.items()}
        self.refit_epochs_ = refit_epochs
        self.refit_time_ = refit_time
        kept = outcome.tuned if self.keep_candidates else {outcome.selected: selected}
        # with cv, a candidate's models are one per fold: the first fold's stands for it
        self.candidates_ = {k: t.module[0] if isinstance(ft, CrossValidation) else t.module
                            for k, t in kept.items()}
        self.net_ = _net_like(self.base_net, model)
        self.fit_time_ = time.perf_counter() - started
        return self

    def _optimization(self, net, n_train):
        batch_size = self.batch_size or net.batch_size
        if batch_size is None or batch_size < 1:  # skorch: -1 is the whole set
            batch_size = n_train
        kwargs = dict(net.get_params_for("optimizer"))
        kwargs.pop("lr", None)
        steps_per_epoch = math.ceil(n_train / batch_size)
        return Optimization(
            optimizer=net.optimizer, optimizer_kwargs=kwargs,
            lr=self.lr if self.lr is not None else net.lr, batch_size=batch_size,
            stopping=Stopping(self.max_epochs, _patience_epochs(self.patience, steps_per_epoch)),
            get_loss=_loss_of(net),
            probabilities=_outputs_probabilities(net),
            autocast_dtype=_AUTOCAST_DTYPES[self.precision])

    def _check_unit_options(self, units):
        names = [unit.name for unit in units]
        if self.embedding_unit is not None and self.embedding_unit not in names:
            raise ValueError(f"embedding_unit={self.embedding_unit!r} is not a unit; "
                             f"units are {names}.")
        if self.strategy == "ft-fc" and self.n_fc_units > len(units):
            raise ValueError(f"n_fc_units={self.n_fc_units} exceeds the {len(units)} units "
                             f"{names}.")
        if self.max_units > 1 and not STRATEGIES[self.strategy].single_unit:
            single = sorted(name for name, s in STRATEGIES.items() if s.single_unit)
            raise ValueError(
                f"max_units={self.max_units} grows the single unit that a selection strategy "
                f"picks ({', '.join(single)}); strategy={self.strategy!r} tunes a fixed "
                f"selection. Use max_units=1 with it.")

    # -- input validation -------------------------------------------------------------------

    def _validate_training_data(self, X, y):
        y = _as_numpy(y) if y is not None else y
        if torch.is_tensor(X):  # stays on its device: no round trip through numpy
            X = _check_tensor(X, "X")
            if y is None:
                raise ValueError(f"{type(self).__name__} requires y to be passed, but the "
                                 f"target y is None.")
            y = column_or_1d(y, warn=True)
            check_consistent_length(X, y)
            self.n_features_in_ = X.shape[1]
        else:
            X, y = validate_data(self, X, y, allow_nd=True, dtype=np.float32,
                                 ensure_min_samples=1)
            X = np.ascontiguousarray(X)
        check_classification_targets(y)
        y = _integer_labels(y, "y")
        self._input_shape = tuple(X.shape[1:])
        return X, y

    def _validate_validation_data(self, X_val, y_val):
        X_val = self._validate_X(X_val, name="X_val")
        y_val = column_or_1d(_as_numpy(y_val), warn=True)
        if len(y_val) != len(X_val):
            raise ValueError(f"X_val has {len(X_val)} samples but y_val has {len(y_val)}.")
        y_val = _integer_labels(y_val, "y_val")
        unknown = np.setdiff1d(y_val, self.classes_)
        if unknown.size:
            raise ValueError(f"y_val holds labels {unknown.tolist()} that are not in y; "
                             f"the classes seen in y are {self.classes_.tolist()}.")
        return X_val, y_val

    def _validate_X(self, X, name="X"):
        shape = tuple(getattr(X, "shape", ()))
        expected = self._input_shape
        if len(shape) >= 2 and (len(shape) != len(expected) + 1 or
                                (len(expected) > 1 and shape[1:] != expected)):
            raise ValueError(
                f"{name} has shape {shape}, but {type(self).__name__} was fitted on "
                f"inputs of shape (n_samples, {', '.join(map(str, expected))}).")
        if torch.is_tensor(X):
            X = _check_tensor(X, name)
            if X.shape[1] != self.n_features_in_:
                raise ValueError(f"{name} has {X.shape[1]} features, but "
                                 f"{type(self).__name__} is expecting {self.n_features_in_} "
                                 f"features as input.")
            return X
        checked = check_array(X, allow_nd=True, dtype=np.float32, input_name=name)
        validate_data(self, X, reset=False, skip_check_array=True)  # feature count and names
        return np.ascontiguousarray(checked)

    def _encode(self, y, device):
        return torch.as_tensor(np.searchsorted(self.classes_, y), dtype=torch.long,
                               device=device)

    def _probe(self, module, X, device, base_seed):
        """Materialize lazy modules and check the net takes X; return its output size."""
        probe = self._tensor(X[:2], device)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed_for(base_seed, "materialize"))
            module.eval()
            try:
                outputs = module(probe)
            except (RuntimeError, ValueError, TypeError) as exc:
                raise ValueError(
                    f"base_net cannot take inputs of shape (n_samples, "
                    f"{', '.join(map(str, X.shape[1:]))}): {_expected_input(module, probe)} "
                    f"The network raised: {exc}") from exc
        if not torch.is_tensor(outputs) or outputs.dim() != 2:
            raise ValueError(
                f"base_net's module must return a tensor of shape (n_samples, n_outputs); "
                f"got {type(outputs).__name__} "
                f"{tuple(outputs.shape) if torch.is_tensor(outputs) else ''}.")
        return outputs.shape[1]

    # -- prediction ----------------------------------------------------------------------------

    def _outputs(self, module, X, fn=None, check=True):
        """Run ``module`` (or ``fn``) in eval mode over X in batches; numpy result."""
        device = _device_of(getattr(self, "net_", self.base_net))
        if check:
            X = self._validate_X(X)
        module.eval()
        results = []
        dtype = _AUTOCAST_DTYPES[self.precision]
        autocast = (torch.autocast(device.type, dtype=dtype) if dtype is not None
                    else contextlib.nullcontext())
        with torch.no_grad(), autocast:
            for start in range(0, len(X), _PREDICT_BATCH_SIZE):
                batch = self._tensor(X[start:start + _PREDICT_BATCH_SIZE], device)
                with forward_pass():
                    results.append(_first((fn or module)(batch)).float().cpu())
        return torch.cat(results).numpy()

    def _tensor(self, X, device):
        """X as a tensor on ``device``, channels-last for images if asked for."""
        tensor = torch.as_tensor(X, device=device)
        if self.channels_last and tensor.dim() == 4:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def _proba(self, module, X):
        device = _device_of(self.net_)
        classes = torch.as_tensor(self.classes_, dtype=torch.long, device=device)
        nonlinearity = self.net_._get_predict_nonlinearity()
        probabilities = _outputs_probabilities(self.net_)

        def proba(batch):
            p = nonlinearity(gather(_first(module(batch)).float(), classes, probabilities))
            return p / p.sum(dim=1, keepdim=True)

        return self._outputs(module, X, proba)

    def predict_proba(self, X):
        """Class probabilities, one column per class in ``classes_``.

        The net's outputs are restricted to the columns in ``classes_`` and
        renormalized.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, ...)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        return self._proba(self.net_.module_, X)

    def predict(self, X):
        """Predicted labels, taken from ``classes_``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, ...)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def transform(self, X):
        """Embed X with the tuned net: the input of ``embedding_unit``, flattened.

        By default the input of the last unit, i.e. the penultimate features.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, ...)

        Returns
        -------
        ndarray of shape (n_samples, n_embedding)
        """
        check_is_fitted(self)
        return self._embed(self.net_.module_, X)

    def pretrained_transform(self, X):
        """Embed X with the *pretrained* net, at the same cut as :meth:`transform`.

        Retrieval evaluation (the paper's Section 5.3) embeds source images
        this way and target images with :meth:`transform`.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, ...)

        Returns
        -------
        ndarray of shape (n_samples, n_embedding)
        """
        check_is_fitted(self)
        return self._embed(self._pretrained, X)

    def get_feature_names_out(self, input_features=None):
        """Names of the :meth:`transform` output: ``flextuner0``, ``flextuner1``, ...

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored; the embedding's features are not the input's.

        Returns
        -------
        ndarray of str
        """
        check_is_fitted(self)
        probe = np.zeros((1,) + self._input_shape, dtype=np.float32)
        n_features = self._embed(self._pretrained, probe, check=False).shape[1]
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(n_features)], dtype=object)

    def _embedding_cut(self):
        """Dotted name of the module whose input :meth:`transform` returns."""
        unit_name = self.embedding_unit or self._units[-1].name
        return next(u for u in self._units if u.name == unit_name).modules[0]

    def _embed(self, module, X, check=True):
        cut = self._embedding_cut()
        return self._outputs(
            module, X, lambda batch: _surgery.capture_input(module, cut, batch).flatten(1),
            check=check)

    def score_candidates(self, X, y):
        """Accuracy of every kept candidate on (X, y).

        Needs ``keep_candidates=True``. This is how per-unit test curves (the
        paper's Figure 1) are drawn.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, ...)
            Inputs, shaped as for :meth:`fit`.
        y : array-like of shape (n_samples,)
            Their labels.

        Returns
        -------
        dict
            Keyed like ``candidates_``: the accuracy of each candidate.
        """
        check_is_fitted(self, "candidates_")
        y = _integer_labels(column_or_1d(_as_numpy(y)), "y")
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} samples but y has {len(y)}.")
        return {key: float(np.mean(self.classes_[self._proba(m, X).argmax(1)] == y))
                for key, m in self.candidates_.items()}


# -- helpers --------------------------------------------------------------------------------


def _as_numpy(X):
    if torch.is_tensor(X):
        return X.detach().cpu().numpy()
    return X


def _check_tensor(X, name):
    """Validate a torch tensor input where it lives: float32, at least 2D, finite."""
    if X.is_complex() or not (X.is_floating_point() or X.dtype in _INTEGER_DTYPES):
        raise ValueError(f"{name} must hold real numbers, got a tensor of dtype {X.dtype}.")
    if X.dim() < 2:
        raise ValueError(f"Expected {name} with at least 2 dimensions (n_samples, ...), got "
                         f"a {X.dim()}D tensor.")
    if len(X) == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape={tuple(X.shape)}) while a "
                         f"minimum of 1 is required.")
    X = X.detach().to(torch.float32)
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"Input {name} contains NaN or infinity.")
    return X.contiguous()


_INTEGER_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _device_of(net):
    if getattr(net, "device", None) is not None:
        return torch.device(net.device)
    return torch.device("cpu")


def _pretrained_module(base_net):
    """A private copy of the pretrained module held by ``base_net``."""
    if getattr(base_net, "initialized_", False):
        module = base_net.module_
    elif isinstance(base_net.module, nn.Module):
        module = base_net.module
    else:
        raise ValueError(
            f"base_net holds no pretrained weights: its module is "
            f"{getattr(base_net.module, '__name__', base_net.module)!r} (a class) and the net "
            f"is not initialized. Pass a fitted or initialized NeuralNetClassifier "
            f"(net.initialize()), or one built around an nn.Module instance.")
    return copy.deepcopy(module)


def _net_like(base_net, module):
    """A new initialized net like ``base_net`` that holds ``module``."""
    params = {k: v for k, v in base_net.get_params(deep=False).items()
              if k != "module" and not k.startswith(("module__", "_"))}
    net = type(base_net)(module=module, **copy.deepcopy(params))
    return net.initialize()


def _loss_of(net):
    """The training loss of ``net``: its ``get_loss``, picklable when it is skorch's own."""
    if type(net).get_loss is NeuralNetClassifier.get_loss:
        return SkorchClassifierLoss(net.criterion_)
    return lambda outputs, y: net.get_loss(outputs, y, training=True)


def _write(line):
    """Print a line without breaking a progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(line)


def _outputs_probabilities(net):
    # skorch's convention: NLLLoss means the module outputs probabilities.
    return isinstance(net.criterion_, nn.NLLLoss)


def _expected_input(module, probe):
    """What input ``module`` takes, as far as its first layers tell."""
    for name, layer in module.named_modules():
        if isinstance(layer, nn.modules.conv._ConvNd) and not isinstance(
                layer, nn.modules.lazy.LazyModuleMixin):
            dims = {3: "L", 4: "H, W", 5: "D, H, W"}[layer.weight.dim()]
            if probe.dim() != layer.weight.dim() or probe.shape[1] != layer.in_channels:
                return (f"its first convolution {name!r} expects {layer.in_channels} input "
                        f"channels, i.e. inputs of shape (n_samples, {layer.in_channels}, "
                        f"{dims}).")
            size = " x ".join(map(str, probe.shape[2:]))
            fits = _fitting_size(module, probe)
            if fits is not None:
                return (f"the channel count matches its first convolution {name!r}, but not "
                        f"the size {size}: it takes inputs of shape (n_samples, "
                        f"{', '.join(map(str, fits))}).")
            return (f"the channel count matches its first convolution {name!r}, so the size "
                    f"{size} is what it cannot take: a later layer fixes the input size the "
                    f"network was built for.")
        if isinstance(layer, nn.Linear) and not isinstance(
                layer, nn.modules.lazy.LazyModuleMixin):
            return (f"its first linear layer {name!r} expects {layer.in_features} features, "
                    f"i.e. inputs of shape (n_samples, {layer.in_features}) after any "
                    f"earlier layers.")
    return ""


def _fitting_size(module, probe):
    """An input shape (C, S, S) that ``module`` takes, for square images whose size it rejects.

    The first linear layer after the convolutions fixes the size. The number of
    features it receives grows with the side length, so a bisection over sides finds
    the smallest that feeds it as many features as it expects; a forward pass then
    checks that side. None when no side up to 4 times the given one works.
    """
    linear = next((layer for layer in module.modules() if isinstance(layer, nn.Linear)
                   and not isinstance(layer, nn.modules.lazy.LazyModuleMixin)), None)
    if linear is None or probe.dim() != 4 or probe.shape[2] != probe.shape[3]:
        return None
    seen = []
    handle = linear.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[-1]))

    def features(side):
        seen.clear()
        try:
            module(probe.new_zeros((1, probe.shape[1], side, side)))
        except (RuntimeError, ValueError, TypeError):
            pass
        return seen[0] if seen else 0  # too small to reach the linear layer

    try:
        low, high = 1, 4 * probe.shape[2]
        if features(high) < linear.in_features:
            return None
        while low < high:
            middle = (low + high) // 2
            if features(middle) < linear.in_features:
                low = middle + 1
            else:
                high = middle
        if features(low) != linear.in_features:
            return None
    finally:
        handle.remove()
    shape = (probe.shape[1], low, low)
    try:
        module(probe.new_zeros((1,) + shape))
    except (RuntimeError, ValueError, TypeError):
        return None
    return shape


def _integer_labels(y, name):
    y = np.asarray(y)
    if y.dtype.kind in "OUS":
        raise ValueError(
            f"{name} must hold integer labels that index the pretrained net's outputs, "
            f"got labels of type {y.dtype}. Map your labels to the net's class indices.")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError(f"{name} must hold integer labels, got non-integer values.")
    return y.astype(np.int64)


def _check_labels(classes, n_outputs, name):
    bad = classes[(classes < 0) | (classes >= n_outputs)]
    if bad.size:
        raise ValueError(
            f"{name} holds labels {bad.tolist()} outside [0, {n_outputs}): labels index the "
            f"pretrained net's {n_outputs} outputs.")
    return classes


def _stratified_split(y, fraction, rng):
    """Per-class split: every class gets at least one training and one validation sample."""
    train, val = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        if len(idx) < 2:
            raise ValueError(
                f"FlexTuner holds out validation_fraction={fraction} of each class for "
                f"validation, which needs at least 2 samples per class; class {label} has "
                f"{len(idx)} sample. Pass more data, or X_val and y_val.")
        n_val = min(max(1, int(round(fraction * len(idx)))), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _first(outputs):
    """A module's output, or the first element of a tuple output (skorch's convention)."""
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def _accuracy_of(score):
    return score.accuracy if isinstance(score, Evaluation) else score


def _patience_epochs(patience, steps_per_epoch):
    """``patience`` in epochs: ``"auto"`` waits AUTO_PATIENCE_EPOCHS epochs and at least
    AUTO_PATIENCE_STEPS optimizer steps."""
    if patience != "auto":
        return patience
    return max(AUTO_PATIENCE_EPOCHS, math.ceil(AUTO_PATIENCE_STEPS / steps_per_epoch))


def _check_selection(ft, outcome, strategy, lr):
    """Raise when every run diverged; warn when the selection means little."""
    runs = ft.runs
    diverged = list(dict.fromkeys(describe(key) for key, run in runs if run.diverged))
    if runs and all(run.diverged for _, run in runs):
        raise ValueError(
            f"Training diverged (non-finite loss) at lr={lr:g} in every run "
            f"({', '.join(diverged)}): nothing to select. Use a smaller lr.")
    if diverged:
        warnings.warn(SelectionWarning(
            f"Training diverged (non-finite loss) at lr={lr:g} for {', '.join(diverged)}; "
            f"diverged runs are never selected. A smaller lr may help."), stacklevel=5)
        if strategy in ("fast", "faster") and runs[0][0] == "all" and runs[0][1].diverged:
            warnings.warn(SelectionWarning(
                f"The ft-all run that {strategy} builds its proxy nets from diverged, so the "
                f"proxy scores mean nothing and the unit {describe(outcome.selected)!r} was "
                f"picked blindly. Use a smaller lr, or strategy='flex'."), stacklevel=5)
    proxies = [v for v in outcome.proxy_scores.values() if isinstance(v, Evaluation)]
    pretrained = ft.pretrained_evaluation if proxies else None
    if not any(run.improved for _, run in runs) and not any(
            proxy.improves_on(pretrained) for proxy in proxies):
        warnings.warn(SelectionWarning(
            f"No training run improved on the pretrained weights on validation data (neither "
            f"accuracy nor loss), and no proxy net did: every candidate ties with the "
            f"pretrained net, so the selected {describe(outcome.selected)!r} means nothing "
            f"and the model is the pretrained one. Use a larger lr (now {lr:g}) or more "
            f"epochs."), stacklevel=5)


def _refit(ft, outcome):
    """Retrain the pick from the pretrained weights on training and validation data.

    The run lasts as long as the selection run took to reach its best epoch
    (REFIT_LENGTH: in optimizer steps or in epochs); a pick that peaked at
    epoch 0 stays the pretrained net. Returns the module and the epochs trained.
    """
    chosen = outcome.model
    if chosen.best_epoch == 0:
        return copy.deepcopy(ft.pretrained).eval(), 0
    all_data = ft.on_all_data()
    if REFIT_LENGTH == "steps":
        stopping = Stopping(max_epochs=chosen.best_epoch * chosen.steps_per_epoch,
                            max_steps=chosen.best_epoch * chosen.steps_per_epoch)
    else:
        stopping = Stopping(max_epochs=chosen.best_epoch)
    run = all_data.tune(outcome.selected, stopping=stopping, keep_best=False)
    if run.diverged:
        warnings.warn(SelectionWarning(
            f"Refitting {describe(outcome.selected)!r} on the training and validation data "
            f"diverged (non-finite loss); the model is the selection run's."), stacklevel=5)
        module = chosen.module
        return (module[0] if isinstance(module, FoldModules) else module), None
    return run.module, run.n_epochs


class _progress:
    """A tqdm bar over the training runs of one fit (verbose >= 1)."""

    def __init__(self, verbose, n_runs, strategy):
        self.bar = None
        if verbose >= 1:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=n_runs, desc=f"FlexTuner({strategy})", unit="run")

    def __enter__(self):
        if self.bar is None:
            return None

        def update(description):
            self.bar.set_postfix_str(description)
            self.bar.update()

        return update

    def __exit__(self, exc_type, *exc):
        if self.bar is not None:
            if exc_type is None:  # the total is an upper bound (halving, max_units): end full
                self.bar.total = self.bar.n
                self.bar.refresh()
            self.bar.close()
