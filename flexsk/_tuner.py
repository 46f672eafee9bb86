"""FlexTuner: the estimator. Parameters, validation, fit orchestration, prediction."""

import contextlib
import copy
import functools
import math
import time
import warnings
from numbers import Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, _fit_context, clone
from sklearn.utils import check_random_state
from sklearn.metrics import get_scorer_names
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (check_array, check_consistent_length,
                                      check_is_fitted, column_or_1d, validate_data)
from skorch import NeuralNetClassifier
from torch.utils.data import DataLoader

from . import _forward, _surgery, adapters
from ._scoring import Embedding, ValidationScoring, scorer_of
from ._checks import INTEGER, count
from ._config import get_config
from ._head import (HEAD_OPTIONS, check_ends_in_a_layer, find_head, replace_head, start_head,
                    wants_new_head)
from ._inputs import (Labels, as_numpy, check_tensor, concat_labels, dataset_inputs,
                      dataset_labels, is_dataset, loader_kwargs, read_dataset, stratified_split)
from ._forward import first_output
from ._network import (device_of, expected_input, loss_of, net_like, outputs_probabilities,
                       pretrained_module)
from ._locks import forward_pass
from ._pickling import SlimModule, reference_tensors
from ._selection import refit_max_epochs, select
from ._strategies import DEFAULTS, OPTIONS, RENAMED, STRATEGIES, Strategy
from ._training import (CrossValidation, FineTuning, Optimization, Stopping, TargetData,
                        gather, make_folds, samples_of, seed_for)
from ._units import UNITS_CONSTRAINT, resolve_units

__all__ = ["FlexTuner"]

_AUTOCAST_DTYPES = {"float32": None, "bfloat16": torch.bfloat16}

#: Forward passes without gradients (prediction, validation, caching, proxies) take
#: batches whose widest activations fit in this many bytes, and never fewer samples than
#: a training batch.
EVAL_BATCH_BYTES = 64 * 2 ** 20
#: Optimizers that take their multi-tensor (``foreach``) implementation unless the base
#: net says otherwise: the same results to the bit as one tensor at a time, and faster
#: on a CPU, where torch does not choose it by itself (0.62-0.88x the step time on the
#: zoo nets).
FOREACH_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW)
#: Batch size of a Dataset's first reading (labels, shapes), before the net is known.
_READ_BATCH_SIZE = 64


class FlexTuner(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Fine-tune the one unit of a pretrained network that the target data needs.

    Flex-tuning (Royer & Lampert, WACV 2020) adapts a network pretrained on a
    *source* domain to a visually different target domain with the same
    classes, by fine-tuning exactly one *unit* (a layer or block) and choosing
    which one on validation data. For classes the pretrained net never had,
    a new output layer trains with every candidate (``head``).

    Read more in the :ref:`User Guide <flex_tuning>`.

    Parameters
    ----------
    base_net : skorch.NeuralNetClassifier
        The pretrained network: initialized or fitted, or holding an
        ``nn.Module`` instance. Never modified. Fine-tuning uses its
        optimizer (and ``optimizer__*``), criterion, batch size, learning
        rate, device, iterator settings, declared ``classes``, and its
        ``LRScheduler`` and ``GradientNormClipping`` callbacks, which apply
        to every training run.
    units : "auto", "blocks", list or dict, default="auto"
        How the network splits into units: the top-level children that own
        parameters (``"auto"``), the blocks of block containers
        (``"blocks"``), a list of module names, or a dict of named groups of
        modules and parameters. See :ref:`units`.
    strategy : {STRATEGY_NAMES}, Strategy or callable, default="fast"
        How the unit is chosen: the paper's Algorithms 1-3 (``"flex"``,
        ``"fast"``, ``"faster"``), two selectors beyond the paper
        (``"rgn-unit"``, ``"halving"``), a baseline of the paper's
        (``"ft-all"``, ``"ft-fc"``, ``"ft-ss"``), or a recipe practitioners
        use (``"auto-rgn"``, ``"lp-ft"``, ``"llrd"``; see :ref:`recipes`).
        ``"rgn"``, the former name of ``"rgn-unit"``, is deprecated. See
        :ref:`strategies`.
        Your own: a schedule ``schedule(ctx) -> Outcome``, or a
        :class:`flexsk.strategies.Strategy` that wraps one; see
        :ref:`custom_strategies`.
    head : "auto", "keep", "new" or str, default="auto"
        The output layer. ``"keep"``: the pretrained one; labels name its
        outputs (output indices, or the base net's declared ``classes``).
        ``"new"``: a new ``nn.Linear`` with one output per class of ``y``
        (any labels: strings, integers, booleans, two classes or more),
        which trains in every run besides the candidate's unit, from
        torch's initialization seeded from ``random_state`` (a run of the
        head alone, a linear probe, starts it as a logistic regression on
        the pretrained features). It replaces the last layer with
        parameters in the forward pass, which must be a plain
        ``nn.Linear`` with the net's outputs; or name the layer to replace
        (``head="classifier.fc"``).
        ``"auto"``: keep, unless the base net declares no class names (no
        ``classes``, or ``classes`` equal to ``0, ..., n - 1``) and the
        labels are not output indices (strings, booleans, or integers
        outside the outputs). Meta-estimators that re-encode ``y`` as
        ``0/1`` or ``0..k-1`` (``OneVsRestClassifier``,
        ``OutputCodeClassifier``) need ``head="new"``. See
        :ref:`new_classes`.
STRATEGY_OPTIONS
    pixel_adapter : {None, "color", "spatial", "unet", "auto"}, default=None
        Add pixel-level adapter units, each the identity until trained,
        before the pretrained net (the paper's Section 5.4). See
        :ref:`adapters`.
    validation_fraction : float, default=0.2
        Fraction of each class held out for validation when ``fit`` gets no
        ``X_val``.
    max_epochs : int or "auto", default="auto"
        Most epochs of any one training run. ``"auto"``: 100 epochs, and
        at least 400 optimizer steps, so that a few images per class (one
        step an epoch) still train long enough. See :ref:`selection`.
    patience : int, "auto" or None, default="auto"
        Epochs without progress on validation after which a run stops.
        Progress is a new best epoch (higher accuracy, or the same accuracy
        and a lower loss) or a new minimum of the validation loss: a net
        that starts confidently wrong lowers its loss long before its
        accuracy moves. The run keeps its best epoch's weights.
        ``"auto"`` waits 5 epochs, and at least 40 optimizer steps, so that
        a few images per class still get enough steps. None never stops
        early. See :ref:`selection`.
    validate_every : int or "auto", default="auto"
        Validate after every this many epochs (and after a run's last
        epoch); patience is checked and the best epoch kept among the
        validated ones. ``"auto"``: as often as a validation pass costs no
        more than about a third of the training since the last one, every
        ``ceil(n_val / n_train)`` epochs, and at least twice per ``patience``
        window. 1 validates after every epoch. See :ref:`selection`.
    refit : bool, default=True
        Retrain the selected candidate from the pretrained weights on the
        training and validation data together, for as many epochs as its
        selection run took to peak, and at most twice the ``max_epochs`` of a
        run on those data (with ``"auto"`` on a few images per class, the
        selection runs' 400 steps can be several times as many steps there).
        False returns the selection run's model. See :ref:`refit`.
    cv : int, cross-validation splitter or None, default=None
        Score every candidate by its mean over stratified folds of the
        training and validation data, then refit. Costs ``cv`` times the
        selection. See :ref:`selection`.
    scoring : str, callable or None, default=None
        What "best" means when candidates are ranked (and early stopping
        keeps a run's best epoch): ``None``, validation accuracy; a
        scikit-learn scorer name (``"balanced_accuracy"``, ``"f1_macro"``,
        ``"neg_log_loss"``, ...); a callable ``scorer(estimator, X, y)``,
        higher is better; or :func:`flexsk.metrics.make_retrieval_scorer`
        (mAP@k). The validation loss breaks ties. During a fit, the
        scorer gets each candidate as an estimator that answers on the
        validation samples (``X`` is their positions). :meth:`score` stays
        the accuracy, as a scikit-learn classifier's (a search over
        ``scoring`` values compares on its own ``scoring``). See
        :ref:`scoring`.
    lr : float or None, default=None
        Fine-tuning learning rate; None uses the base net's ``lr``.
    batch_size : int or None, default=None
        None uses the base net's ``batch_size``.
    keep_candidates : bool, default=False
        Keep every candidate the selection run trained in ``candidates_``.
    embedding_unit : str or None, default=None
        The unit whose input :meth:`transform` returns; None: the last unit.
    activation_cache : "auto" or bool, default="auto"
        Compute the outputs of frozen units once instead of every epoch.
        ``"auto"``: when they fit in ``activation_cache_bytes``, and not for
        the training passes over a Dataset (which may augment). See
        :ref:`scaling`.
    activation_cache_bytes : int, default=2**30
        Memory budget of the activation cache for ``"auto"``.
    precision : {"float32", "bfloat16"}, default="float32"
        ``"bfloat16"`` runs forward passes under :func:`torch.autocast`.
    channels_last : "auto" or bool, default="auto"
        Keep images and network in the channels-last memory format.
        ``"auto"``: on a CPU, for 4-D (image) inputs, where it measured
        faster for every network tried (see :ref:`scaling`), unless the
        network gives other outputs in it (a ``.view`` that needs the
        default layout, say); elsewhere the default layout. The layout
        used is ``channels_last_``.
    n_jobs : int or None, default=None
        Parallel jobs for independent training runs, through :mod:`joblib`.
        See :ref:`scaling`.
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split, shuffling, dropout and lazy-module
        initialization.
    verbose : int, default=0
        1 shows a progress bar over training runs; 2 also prints each epoch.
    on_epoch : callable or None, default=None
        Called with a :class:`~flexsk.EpochRecord` at the start of every
        training run (epoch 0) and after each of its epochs: the candidate,
        the epoch, the training loss, the validation accuracy and loss. With
        ``n_jobs``, runs in the worker processes. See :ref:`observing`.

    Attributes
    ----------
    units_ : list of str
        Unit names in forward order, pixel adapters first.
    selected_unit_ : str or tuple of str
        The selected candidate: a unit name, a tuple of unit names,
        ``"all"`` (ft-all), ``"ss"`` (ft-ss) or a recipe's name
        (``"auto-rgn"``, ``"lp-ft"``, ``"llrd"``).
    proxy_scores_ : dict
        Unit name -> selection score, in forward order: the validation
        accuracy (or ``scoring``'s score) of each proxy net (fast, faster)
        or candidate (flex, halving), or the relative gradient norm
        (rgn-unit). Empty for baselines and recipes.
    proxy_losses_ : dict
        The validation losses beside ``proxy_scores_``, where they are
        validation scores.
    validation_scores_ : dict
        Validation accuracy (or ``scoring``'s score) of every candidate of
        the selection run, keyed like ``selected_unit_``.
    validation_losses_ : dict
        Their validation losses (the criterion on the target classes), with
        the same keys; NaN for a run that diverged.
    selection_results_ : dict of ndarray
        One row per candidate of the selection run, ``pandas.DataFrame``
        ready: ``candidate``, ``units``, ``n_trained_params``, ``score``,
        ``score_std``, ``accuracy``, ``loss``, ``proxy_score``,
        ``proxy_loss``, ``n_epochs``, ``best_epoch``, ``n_steps``,
        ``max_epochs_reached``, ``fit_seconds``, ``rank``, ``picked``. The
        dicts around it are views of its columns. See
        :ref:`selection_results`.
    n_epochs_ : dict
        Epochs each candidate trained in the selection run.
    best_epochs_ : dict
        The epoch each candidate's selection run kept (0: the starting
        weights).
    refit_epochs_ : int or None
        Epochs of the refit (0 when the pick peaked at epoch 0 and stays the
        pretrained net); None with ``refit=False``, and when the refit
        failed (it diverged, or scores below the selection run's model on
        the data it trained on) and the selection run's model is returned.
    fit_time_ : float
        Wall-clock seconds of ``fit``.
    refit_time_ : float
        The part of ``fit_time_`` the refit took.
    candidates_ : dict
        The selection run's trained modules: every candidate with
        ``keep_candidates=True``, else the selected one, so that
        ``score_candidates(X, y)[selected_unit_]`` scores the selection
        run's pick (with ``cv``: its model of the first fold).
    net_ : skorch.NeuralNetClassifier
        An initialized net holding the returned model: the refit pick, or
        the selection run's with ``refit=False``. Its own ``predict``
        returns output indices; use :meth:`predict`.
    classes_ : ndarray of shape (n_classes,)
        The labels seen in ``y``, in the order of the net's outputs: output
        indices, or the base net's declared ``classes``; with a new head,
        the sorted labels of ``y`` (output ``i`` is ``classes_[i]``).
    head_ : str or None
        The name of the output layer replaced by a new head, in the base
        net's module (with ``pixel_adapter``, ``net_.module_`` holds it under
        ``net.``), or None when the pretrained one was kept.
    channels_last_ : bool
        Whether the fit trained, and the tuner predicts, in the
        channels-last memory format (``channels_last``).
    max_epochs_reached_ : dict
        For every candidate of the selection run, whether its run ended at
        ``max_epochs`` while still improving (its best epoch among its last
        ``patience`` epochs): such a run would likely have found a better
        model with more epochs. A ``ConvergenceWarning`` says so when it
        is the selected candidate's.
    n_features_in_ : int
        Size of the second input axis (channels for images).

    See Also
    --------
    flexsk.preview_units : The units a network splits into.
    flexsk.metrics.make_retrieval_scorer : mAP@k of the tuned embeddings.

    Notes
    -----
    Candidates, epochs and proxies are ranked by validation accuracy, then
    validation loss, then forward order (a unit before ``"all"``). Runs whose
    loss becomes non-finite are never selected; a
    :class:`~flexsk.SelectionWarning` says when a pick means nothing.

    Frozen units run in eval mode during training, so BatchNorm statistics
    and dropout outside the tuned units do not move. The returned network
    differs from the pretrained one only inside the selected unit(s).

    With the same ``random_state`` and the same torch thread count, fits on
    CPU are reproducible, whatever ``n_jobs``; see :ref:`scaling` for
    threads.

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
        "units": UNITS_CONSTRAINT,
        "strategy": [StrOptions(set(STRATEGIES) | set(RENAMED), deprecated=set(RENAMED)),
                     Strategy, callable],
        **{name: list(option.constraints) for name, option in OPTIONS.items()},
        "head": [str],
        "pixel_adapter": [StrOptions(set(adapters.ADAPTERS) | {"auto"}), None],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "max_epochs": [count(1), StrOptions({"auto"})],
        "patience": [count(1), StrOptions({"auto"}), None],
        "validate_every": [count(1), StrOptions({"auto"})],
        "refit": ["boolean"],
        "cv": ["cv_object"],  # None included
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "lr": [Interval(Real, 0, None, closed="neither"), None],
        "batch_size": [count(1), None],
        "keep_candidates": ["boolean"],
        "embedding_unit": [str, None],
        "activation_cache": [StrOptions({"auto"}), "boolean"],
        "activation_cache_bytes": [count(0)],
        "precision": [StrOptions(set(_AUTOCAST_DTYPES))],
        "channels_last": [StrOptions({"auto"}), "boolean"],
        "n_jobs": [INTEGER, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "on_epoch": [callable, None],
    }

    def __init__(self, base_net, *, units="auto", strategy="fast", head="auto",
                 # the built-in strategies' options (flexsk/_strategies: OPTIONS)
                 candidates=DEFAULTS.candidates, max_units=DEFAULTS.max_units,
                 pair_margin=DEFAULTS.pair_margin, halving_factor=DEFAULTS.halving_factor,
                 halving_min_epochs=DEFAULTS.halving_min_epochs,
                 n_fc_units=DEFAULTS.n_fc_units, layer_decay=DEFAULTS.layer_decay,
                 pixel_adapter=None,
                 validation_fraction=0.2, max_epochs="auto", patience="auto",
                 validate_every="auto", refit=True, cv=None, scoring=None,
                 lr=None,
                 batch_size=None, keep_candidates=False, embedding_unit=None,
                 activation_cache="auto", activation_cache_bytes=2 ** 30,
                 precision="float32", channels_last="auto", n_jobs=None, random_state=None,
                 verbose=0, on_epoch=None):
        self.base_net = base_net
        self.units = units
        self.strategy = strategy
        self.head = head
        self.candidates = candidates
        self.n_fc_units = n_fc_units
        self.layer_decay = layer_decay
        self.max_units = max_units
        self.pair_margin = pair_margin
        self.halving_factor = halving_factor
        self.halving_min_epochs = halving_min_epochs
        self.pixel_adapter = pixel_adapter
        self.validation_fraction = validation_fraction
        self.max_epochs = max_epochs
        self.patience = patience
        self.validate_every = validate_every
        self.refit = refit
        self.cv = cv
        self.scoring = scoring
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
        self.on_epoch = on_epoch

    # -- sklearn protocol ----------------------------------------------------------------

    def __sklearn_clone__(self):
        # The default clone would re-create base_net from its class and lose the
        # pretrained weights; a deep copy keeps them and isolates the user's net.
        params = self.get_params(deep=False)
        base_net = copy.deepcopy(params.pop("base_net"))
        return type(self)(base_net, **{k: clone(v, safe=False) for k, v in params.items()})

    def set_params(self, **params):
        """Set parameters, as in scikit-learn; the base net passed in is never changed.

        Nested parameters (``base_net__lr``, ...) are set on a copy of the base
        net, which the tuner holds from then on: the net you passed in keeps
        its settings. So are a :class:`~flexsk.strategies.Strategy`'s own
        options (``strategy__k``). ``base_net__module`` and ``base_net__module__*`` are
        refused: they would make skorch re-initialize the module from its
        class and lose the pretrained weights. Pass another pretrained net as
        ``base_net`` instead.

        Parameters
        ----------
        **params : dict
            Estimator parameters.

        Returns
        -------
        self : FlexTuner
        """
        refused = sorted(key for key in params
                         if key == "base_net__module" or key.startswith("base_net__module__"))
        if refused:
            raise ValueError(
                f"set_params({', '.join(refused)}=...) would make skorch re-initialize "
                f"base_net's module from its class and lose the pretrained weights. Pass a "
                f"pretrained net as base_net instead.")
        if any(key.startswith("strategy__") for key in params) and isinstance(
                params.get("strategy", self.strategy), Strategy):
            # copy on write: the record passed in (or a built-in's) keeps its settings
            strategy = params.pop("strategy", self.strategy)
            super().set_params(strategy=clone(strategy, safe=False))
        if any(key.startswith("base_net__") for key in params):
            base_net = params.pop("base_net", self.base_net)
            super().set_params(base_net=copy.deepcopy(base_net))  # copy on write
            optimizer = params.pop("base_net__optimizer", None)
            if optimizer is not None:
                # skorch's set_params refuses a new optimizer class on an initialized net
                self.base_net.optimizer = optimizer
                if getattr(self.base_net, "initialized_", False):
                    self.base_net.initialize_optimizer()
        return super().set_params(**params)

    def __sklearn_is_fitted__(self):
        return hasattr(self, "net_")

    def __getstate__(self):
        # Lean pickles: the returned model, the candidates and the pretrained copy are
        # stored as what differs from the base net's weights (see flexsk/_pickling.py).
        state = super().__getstate__()
        state["base_net"] = _without_optimizers(state["base_net"])
        if "net_" not in state:
            return state
        reference = reference_tensors(getattr(self.base_net, "module_", None))
        slim = {}

        def lean(module):
            if id(module) not in slim:
                slim[id(module)] = SlimModule(module, reference)
            return slim[id(module)]

        return {**state, "net_": lean(self.net_.module_),
                "candidates_": {k: lean(m) for k, m in self.candidates_.items()},
                "_pretrained": lean(self._pretrained)}

    def __setstate__(self, state):
        state = {**state, "base_net": _with_optimizers(state["base_net"])}
        if isinstance(state.get("net_"), SlimModule):
            reference = reference_tensors(getattr(state["base_net"], "module_", None))
            restored = {}

            def full(slim):
                if id(slim) not in restored:
                    restored[id(slim)] = slim.restore(reference)
                return restored[id(slim)]

            state = {**state, "net_": full(state["net_"]),
                     "candidates_": {k: full(m) for k, m in state["candidates_"].items()},
                     "_pretrained": full(state["_pretrained"])}
            super().__setstate__(state)
            self.net_ = self._net_holding(self.net_)
            return
        super().__setstate__(state)

    def __repr__(self, N_CHAR_MAX=700):
        # FlexTuner's own changed settings first; the base net as a one-line summary
        # (its module and parameter count), without skorch's internals.
        from sklearn.utils._pprint import _changed_params

        changed = {k: v for k, v in _changed_params(self).items() if k != "base_net"}
        settings = [f"{k}={_short_repr(v)}" for k, v in changed.items()]
        text = f"{type(self).__name__}({', '.join(settings + [_net_summary(self.base_net)])})"
        return text if len(text) <= N_CHAR_MAX else text[:N_CHAR_MAX - 4] + "...)"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # -- fit ---------------------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, *, X_val=None, y_val=None):
        """Select and fine-tune a unit of the pretrained network.

        Parameters
        ----------
        X : array-like, torch.Tensor of shape (n_samples, ...) or Dataset
            Target training inputs, shaped as the base net takes them:
            ``(n_samples, C, H, W)`` for images, ``(n_samples, n_features)``
            for tabular nets. Any real dtype; cast to float32. A
            :class:`torch.utils.data.Dataset` yields ``(x, y)`` pairs and
            is read through a DataLoader at every pass (random transforms
            draw anew; see ``activation_cache``).
        y : array-like of shape (n_samples,) or None
            Labels: indices into the pretrained net's outputs, or the
            names that the base net declares with ``classes=[...]``; with a
            new head (``head``), any labels. None when X is a Dataset.
        X_val, y_val : array-like, or a Dataset and None, optional
            A fixed validation set. When given, it replaces the internal
            split (as in :meth:`sklearn.ensemble.HistGradientBoostingClassifier.fit`).
            In a :class:`~sklearn.pipeline.Pipeline`, route them through
            the earlier steps with metadata routing (see the user guide).

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
        config = get_config()  # read once: every run of this fit, in any worker, follows it
        self._check_params(X_val, y_val)
        X, y, probe_rows = self._validate_training_data(X, y)
        base_seed = int(check_random_state(self.random_state).randint(2 ** 31 - 1))
        callbacks = _training_callbacks(self.base_net)
        device = device_of(self.base_net)
        pretrained = pretrained_module(self.base_net).to(device)
        self.channels_last_ = False  # the probe runs in the default layout
        probe = self._tensor(probe_rows, device)
        n_outputs, per_sample_bytes = self._probe(pretrained, probe, base_seed)
        self.channels_last_ = self._channels_last(pretrained, probe)
        if self.channels_last_:
            pretrained = pretrained.to(memory_format=torch.channels_last)
            probe = self._tensor(probe_rows, device)
        labels, head = self._output_layer(pretrained, probe, y, n_outputs, base_seed)
        outputs = self._encode_labels(y, labels)
        train, val = self._target_samples(X, outputs, X_val, y_val, device, base_seed)
        units = resolve_units(pretrained, self.units, probe)
        if self.pixel_adapter is not None:
            pretrained, units = adapters.attach(pretrained, units, self.pixel_adapter,
                                                self._input_shape, seed_for(base_seed, "adapters"))
            head = head and adapters.inside(head)
        strategy, options = self._strategy_options(units)
        eval_batch_size = _eval_batch_size(per_sample_bytes, self.batch_size or
                                           self.base_net.batch_size)
        folds = None if self.cv is None else make_folds(self.cv, train.concat(val),
                                                        self.classes_)
        n_runs = strategy.total_runs(len(units), **options)  # an upper bound; None: unknown
        with _Progress(self.verbose, strategy.name) as progress:
            settings = dict(progress=progress if self.verbose >= 1 else None,
                            log=_write if self.verbose >= 2 else None,
                            on_epoch=self.on_epoch, cache=self.activation_cache,
                            cache_bytes=self.activation_cache_bytes, n_jobs=self.n_jobs,
                            scoring=self._validation_scoring(units, device, eval_batch_size))
            net = self._net_holding(pretrained)
            classes = torch.as_tensor(self._class_outputs, dtype=torch.long, device=device)

            def context(train, val, seed):
                optimization = self._optimization(net, len(train), 0 if val is None else len(val),
                                                  eval_batch_size, callbacks)
                start, alone = pretrained, None  # a new head starts on this context's data
                if head is not None:
                    start = start_head(pretrained, head, train, eval_batch_size,
                                       config["head_start"])
                    alone = functools.partial(start_head, start, head, train, eval_batch_size,
                                              config["head_alone_start"])
                return FineTuning(start, units, TargetData(train, val, classes), optimization,
                                  seed, head=head, head_alone=alone, config=config, **settings)

            if folds is None:
                ctx = context(train, val, base_seed)
                if self.refit:  # its budget (and a new head's start) from all the data
                    ctx.all_data = context(train.concat(val), None, base_seed)
            else:
                ctx = CrossValidation.over(folds, train.concat(val), context, base_seed)
            refit_budget = 0
            if self.refit:
                all_data = ctx.on_all_data()
                refit_budget = _budget(all_data, len(train) + len(val),
                                       refit_max_epochs(all_data))
            progress.plan(n_runs and n_runs * len(folds or [0]), _budget(ctx, len(train)),
                          refit_budget)
            result = select(ctx, strategy, options, refit=self.refit)
        self._set_result(result, units, head, eval_batch_size)
        self.fit_time_ = time.perf_counter() - started
        return self

    def _check_params(self, X_val, y_val):
        """Cross-parameter checks, before anything costly."""
        if (X_val is None) != (y_val is None) and not is_dataset(X_val):
            raise ValueError("Pass both X_val and y_val, or neither (or X_val as a Dataset of "
                             "(x, y) pairs, with y_val=None).")
        if self.cv is not None and not self.refit:
            raise ValueError("cv scores each candidate on several folds, which gives no "
                             "single selection-run model: it needs refit=True.")

    def _output_layer(self, pretrained, probe, y, n_outputs, base_seed):
        """How labels map to outputs, and the new head (a Unit) or None.

        With a new head, ``pretrained`` (the private copy) gets it in place.
        """
        check_ends_in_a_layer(pretrained, probe, self.head)
        labels = Labels(getattr(self.base_net, "classes", None), n_outputs)
        self.head_ = None
        y = as_numpy(y)
        if not wants_new_head(self.head, labels, y):
            return labels, None
        classes = np.unique(y)
        name = find_head(pretrained, probe, n_outputs) if self.head in HEAD_OPTIONS \
            else self.head
        head = replace_head(pretrained, name, len(classes), seed_for(base_seed, "head"), probe)
        self.head_ = name
        if self.head == "auto" and y.dtype.kind in "iuf":
            outside = classes[(classes < 0) | (classes >= n_outputs) | (classes % 1 != 0)]
            warnings.warn(
                f"head='auto' replaced the pretrained output layer {name!r} by a new one, "
                f"because the labels are not all indices of its {n_outputs} outputs "
                f"({outside.tolist()[0]!r} is not). If they are the pretrained classes "
                f"numbered from 1, pass y - 1 to keep the pretrained layer; pass head='new' "
                f"to say a new layer is what you want.", UserWarning, stacklevel=5)
        return Labels(classes, len(classes), of_y=True), head

    def _net_holding(self, module):
        """A net like the base net holding ``module``; with a new head, it declares
        ``classes_``."""
        if getattr(self, "head_", None) is None:
            return net_like(self.base_net, module)
        return net_like(self.base_net, module, classes=self.classes_.tolist())

    def _encode_labels(self, y, labels):
        """The net's output index of each label; ``classes_`` and the label mapping."""
        outputs = labels.outputs_of(y, "y")
        self._class_outputs = np.unique(outputs)
        self._labels = labels
        self.classes_ = labels.labels_of(self._class_outputs)
        if len(self.classes_) < 2:
            raise ValueError(
                f"The number of classes has to be greater than one; got 1 class "
                f"({self.classes_.tolist()[0]!r}) in y. Selection needs at least two classes.")
        return outputs

    def _target_samples(self, X, outputs, X_val, y_val, device, base_seed):
        """Training and validation samples: ``X_val``, or a stratified split of X."""
        targets = np.searchsorted(self._class_outputs, outputs)
        kwargs = {kind: loader_kwargs(self.base_net, f"iterator_{kind}")
                  for kind in ("train", "valid")}

        def to_device(x):
            return self._tensor(x, device)

        if X_val is None:
            train_idx, val_idx = stratified_split(
                outputs, self.validation_fraction, np.random.RandomState(base_seed),
                names=lambda output: self._labels.labels_of([output]).tolist()[0])
            return (samples_of(X, targets, kwargs["train"], to_device, device, train_idx),
                    samples_of(X, targets, kwargs["valid"], to_device, device, val_idx))
        X_val, val_targets = self._validate_validation_data(X_val, y_val)
        return (samples_of(X, targets, kwargs["train"], to_device, device),
                samples_of(X_val, val_targets, kwargs["valid"], to_device, device))

    def _strategy_options(self, units):
        """The strategy record and the options its schedule takes; unit options checked.

        A built-in strategy's options are FlexTuner parameters; a user strategy's own
        options are its record's (``Strategy(..., k=5)``, ``set_params(strategy__k=5)``).
        """
        self._check_unit_options(units)
        strategy = self._strategy_record()
        if len(units) == 1 and strategy.single_unit:
            warnings.warn(
                f"The network splits into a single unit ({units[0].name!r}), so selection "
                f"has nothing to choose: that unit and 'all' train (nearly) the same "
                f"parameters. Pass units='blocks' or a list of submodules "
                f"(flexsk.preview_units shows the split).", UserWarning, stacklevel=5)
        options = strategy.own_options(builtin=OPTIONS)
        options.update({option.name: getattr(self, option.name) for option in strategy.options
                        if option.name in OPTIONS})
        if strategy.single_unit:
            options.update(max_units=self.max_units, pair_margin=self.pair_margin)
        return strategy, options

    def _validation_scoring(self, units, device, eval_batch_size):
        """``scoring``, ready to score candidates' validation outputs; None ranks by
        accuracy."""
        if self.scoring is None:
            return None
        return ValidationScoring(
            scorer_of(self.scoring), self.classes_, outputs_probabilities(self.base_net),
            Embedding(_embedding_cut(units, self.embedding_unit), device, self.channels_last_,
                      eval_batch_size))

    def _set_result(self, result, units, head, eval_batch_size):
        """Every fitted attribute of the selection, at once."""
        for name, value in result.attributes(self.keep_candidates).items():
            setattr(self, name, value)
        self.units_ = [unit.name for unit in units]
        self.net_ = self._net_holding(result.model)
        self._units, self._pretrained, self._head = units, result.start, head
        self._eval_batch_size = eval_batch_size

    def _optimization(self, net, n_train, n_val, eval_batch_size, callbacks=()):
        batch_size = self.batch_size or net.batch_size
        if batch_size is None or batch_size < 1:  # skorch: -1 is the whole set
            batch_size = n_train
        kwargs = dict(net.get_params_for("optimizer"))
        kwargs.pop("lr", None)
        if isinstance(net.optimizer, type) and issubclass(net.optimizer, FOREACH_OPTIMIZERS):
            kwargs.setdefault("foreach", True)
        return Optimization(
            optimizer=net.optimizer, optimizer_kwargs=kwargs,
            lr=self.lr if self.lr is not None else net.lr, batch_size=batch_size,
            stopping=Stopping.auto(n_train=n_train, n_val=n_val, batch_size=batch_size,
                                   max_epochs=self.max_epochs, patience=self.patience,
                                   validate_every=self.validate_every),
            get_loss=loss_of(net),
            probabilities=outputs_probabilities(net), eval_batch_size=eval_batch_size,
            autocast_dtype=_AUTOCAST_DTYPES[self.precision], callbacks=callbacks)

    def _check_unit_options(self, units):
        names = [unit.name for unit in units]
        if self.embedding_unit is not None and self.embedding_unit not in names:
            raise ValueError(f"embedding_unit={self.embedding_unit!r} is not a unit; "
                             f"units are {names}.")
        strategy = self._strategy_record()
        if self.max_units > 1 and not strategy.single_unit:
            single = sorted(name for name, s in STRATEGIES.items() if s.single_unit)
            raise ValueError(
                f"max_units={self.max_units} grows the single unit that a selection strategy "
                f"picks ({', '.join(single)}, or a Strategy with single_unit=True); "
                f"strategy={strategy.name!r} tunes a fixed selection. Use max_units=1 with "
                f"it.")

    def _strategy_record(self):
        """The :class:`~flexsk.strategies.Strategy` that ``strategy`` names or gives."""
        if isinstance(self.strategy, str):
            if self.strategy in RENAMED:
                name, removed = RENAMED[self.strategy]
                warnings.warn(f"strategy={self.strategy!r} is now {name!r}, and the former name "
                              f"will be removed in {removed}. (The recipe 'auto-rgn' is "
                              f"Auto-RGN as published: every tensor trains, at a learning rate "
                              f"scaled by its relative gradient norm.)", FutureWarning,
                              stacklevel=6)
                return STRATEGIES[name]
            return STRATEGIES[self.strategy]
        if isinstance(self.strategy, Strategy):
            return self.strategy
        if isinstance(self.strategy, type):
            raise TypeError(f"strategy={self.strategy.__name__} is a class; pass a schedule "
                            f"function, or an instance such as Strategy(name, schedule).")
        name = getattr(self.strategy, "__name__", type(self.strategy).__name__)
        return Strategy(name, self.strategy)

    # -- input validation -------------------------------------------------------------------

    def _validate_training_data(self, X, y):
        """X (array, tensor or Dataset), its labels, and its first rows (the probe)."""
        if is_dataset(X):
            if y is not None:
                raise ValueError(
                    "X is a torch Dataset, which carries its labels: it must yield (x, y) "
                    "pairs, and y must be None.")
            first, y = read_dataset(X, loader_kwargs(self.base_net, "iterator_valid"),
                                    _READ_BATCH_SIZE, "X")
            if y is None:
                raise ValueError("X is a Dataset that yields inputs only; fit needs a Dataset "
                                 "of (x, y) pairs.")
            self.n_features_in_ = first.shape[1]
            self._input_shape = tuple(first.shape[1:])
            check_classification_targets(y)
            return X, y, first[:2]
        y = as_numpy(y) if y is not None else y
        _warn_integer_images(X, "X")
        if torch.is_tensor(X):  # stays on its device: no round trip through numpy
            X = check_tensor(X, "X")
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
        self._input_shape = tuple(X.shape[1:])
        return X, y, X[:2]

    def _validate_validation_data(self, X_val, y_val):
        """X_val and its encoded labels (positions in ``classes_``)."""
        if is_dataset(X_val):
            if y_val is not None:
                raise ValueError("X_val is a torch Dataset, which carries its labels: it "
                                 "must yield (x, y) pairs, and y_val must be None.")
            first, y_val = read_dataset(X_val, loader_kwargs(self.base_net, "iterator_valid"),
                                        _READ_BATCH_SIZE, "X_val")
            if y_val is None:
                raise ValueError("X_val is a Dataset that yields inputs only; it must yield "
                                 "(x, y) pairs.")
            self._check_shape(tuple(first.shape), "X_val")
        else:
            _warn_integer_images(X_val, "X_val", stacklevel=7)
            X_val = self._validate_X(X_val, name="X_val")
            y_val = column_or_1d(as_numpy(y_val), warn=True)
            if len(y_val) != len(X_val):
                raise ValueError(f"X_val has {len(X_val)} samples but y_val has "
                                 f"{len(y_val)}.")
        outputs = self._labels.outputs_of(y_val, "y_val")
        unknown = np.setdiff1d(outputs, self._class_outputs)
        if unknown.size:
            raise ValueError(f"y_val holds labels {self._labels.labels_of(unknown).tolist()} "
                             f"that are not in y; the classes seen in y are "
                             f"{self.classes_.tolist()}.")
        return X_val, np.searchsorted(self._class_outputs, outputs)

    def _check_shape(self, shape, name):
        expected = self._input_shape
        if len(shape) >= 2 and (len(shape) != len(expected) + 1 or
                                (len(expected) > 1 and shape[1:] != expected)):
            raise ValueError(
                f"{name} has shape {shape}, but {type(self).__name__} was fitted on "
                f"inputs of shape (n_samples, {', '.join(map(str, expected))}).")

    def _validate_X(self, X, name="X"):
        self._check_shape(tuple(getattr(X, "shape", ())), name)
        if torch.is_tensor(X):
            X = check_tensor(X, name)
            if X.shape[1] != self.n_features_in_:
                raise ValueError(f"{name} has {X.shape[1]} features, but "
                                 f"{type(self).__name__} is expecting {self.n_features_in_} "
                                 f"features as input.")
            return X
        checked = check_array(X, allow_nd=True, dtype=np.float32, input_name=name)
        validate_data(self, X, reset=False, skip_check_array=True)  # feature count and names
        return np.ascontiguousarray(checked)

    def _channels_last(self, module, probe):
        """Whether to train and predict in the channels-last layout (``channels_last``).

        ``"auto"``: on a CPU, for 4-D inputs, when the eval-mode outputs of
        the probe batch in that layout match the default layout's. ``True``
        is refused for a network that cannot run in it.
        """
        if self.channels_last is False or probe.dim() != 4 or (
                self.channels_last == "auto" and probe.device.type != "cpu"):
            return False
        module.eval()
        try:
            with torch.no_grad(), forward_pass():
                expected = first_output(module(probe))
                found = first_output(copy.deepcopy(module).to(memory_format=torch.channels_last)(
                    probe.contiguous(memory_format=torch.channels_last)))
            problem = None if torch.allclose(found, expected, rtol=1e-4, atol=1e-5) else (
                "gives other outputs in it")
        except (RuntimeError, ValueError, TypeError) as exc:  # a .view of the default layout
            problem = f"raises in it ({exc})"
        if problem is not None and self.channels_last is True:
            raise ValueError(f"channels_last=True, but the network {problem}: it needs the "
                             f"default memory format. Use channels_last=False (or 'auto').")
        return problem is None

    def _probe(self, module, probe, base_seed):
        """Materialize lazy modules and check the net takes the probe batch.

        Returns the net's number of outputs and the bytes one sample's
        activations take at the widest point of the network (for batch sizes
        of forward passes without gradients).
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_for(base_seed, "materialize"))
            try:
                outputs, seen = _forward.outputs(module, probe)
            except (RuntimeError, ValueError, TypeError) as exc:
                raise ValueError(
                    f"base_net cannot take inputs of shape (n_samples, "
                    f"{', '.join(map(str, probe.shape[1:]))}): "
                    f"{expected_input(module, probe)} The network raised: {exc}") from exc
        outputs = first_output(outputs)
        widest = [probe[0].numel() * probe.element_size()] + [
            output[0].numel() * output.element_size() for output in seen.values()
            if torch.is_tensor(output) and output.dim() > 0 and len(output)]
        if not torch.is_tensor(outputs) or outputs.dim() != 2:
            raise ValueError(
                f"base_net's module must return a tensor of shape (n_samples, n_outputs), or "
                f"a tuple whose first element is one; got {type(outputs).__name__} "
                f"{tuple(outputs.shape) if torch.is_tensor(outputs) else ''}.")
        low, high = float(outputs.min()), float(outputs.max())
        if _takes_logits(self.base_net) and low >= 0 and bool(torch.allclose(
                outputs.float().sum(1), torch.ones(len(outputs), device=outputs.device),
                atol=1e-4)):
            raise ValueError(
                "base_net's module outputs probabilities (every row sums to 1: a final "
                "Softmax?), but its criterion is CrossEntropyLoss, which takes logits and "
                "would apply a second softmax. Remove the Softmax, or use "
                "criterion=torch.nn.NLLLoss (skorch's default, which takes probabilities).")
        if outputs_probabilities(self.base_net) and (low < 0 or high > 1 + 1e-3):
            raise ValueError(
                f"base_net's criterion is NLLLoss (skorch's default), which takes the module's "
                f"outputs as probabilities, but they range from {low:.3g} to {high:.3g}: a "
                f"module that outputs logits needs criterion=torch.nn.CrossEntropyLoss.")
        return outputs.shape[1], 2 * max(widest) + widest[0]

    # -- prediction ----------------------------------------------------------------------------

    def _outputs(self, module, X, fn=None, check=True, labels=None):
        """Run ``module`` (or ``fn``) in eval mode over X in batches; numpy result.

        X may be a Dataset of ``x`` or ``(x, y)`` items; ``labels``, a list,
        then receives the labels of the batches read.
        """
        net = getattr(self, "net_", self.base_net)
        device = device_of(net)
        batch_size = getattr(self, "_eval_batch_size", None) or _READ_BATCH_SIZE
        module.eval()
        results = []
        dtype = _AUTOCAST_DTYPES[self.precision]
        autocast = (torch.autocast(device.type, dtype=dtype) if dtype is not None
                    else contextlib.nullcontext())
        if is_dataset(X):
            if len(X) == 0:
                raise ValueError("X is an empty Dataset: there is nothing to predict.")
            batches = DataLoader(X, batch_size=batch_size, shuffle=False,
                                 **loader_kwargs(net, "iterator_valid"))
        else:
            if check:
                X = self._validate_X(X)
            batches = (X[start:start + batch_size] for start in range(0, len(X), batch_size))
        with torch.no_grad(), autocast:
            for batch in batches:
                if is_dataset(X):
                    if labels is not None:
                        labels.append(dataset_labels(batch))
                    batch = dataset_inputs(batch, "X")
                    self._check_shape(tuple(batch.shape), "X")
                with forward_pass():
                    results.append(first_output((fn or module)(self._tensor(batch, device)))
                                   .float().cpu())
        return torch.cat(results).numpy()

    def _tensor(self, X, device):
        """X as a float32 tensor on ``device``, channels-last for images if asked for."""
        tensor = torch.as_tensor(X, device=device, dtype=torch.float32)
        if self.channels_last_ and tensor.dim() == 4:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def _proba(self, module, X, labels=None):
        device = device_of(self.net_)
        classes = torch.as_tensor(self._class_outputs, dtype=torch.long, device=device)
        nonlinearity = self.net_._get_predict_nonlinearity()
        probabilities = outputs_probabilities(self.net_)

        def proba(batch):
            p = nonlinearity(gather(first_output(module(batch)).float(), classes, probabilities))
            return p / p.sum(dim=1, keepdim=True)

        return self._outputs(module, X, proba, labels=labels)

    def predict_proba(self, X):
        """Class probabilities, one column per class in ``classes_``.

        The net's outputs are restricted to the columns in ``classes_`` and
        renormalized.

        Parameters
        ----------
        X : array-like, torch.Tensor of shape (n_samples, ...) or Dataset
            A Dataset may yield ``x`` or ``(x, y)`` items; ``y`` is ignored.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        return self._proba(self.net_.module_, X)

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba` (``-inf`` where a probability is 0).

        Parameters
        ----------
        X : array-like, torch.Tensor of shape (n_samples, ...) or Dataset

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Predicted labels, taken from ``classes_``.

        Parameters
        ----------
        X : array-like, torch.Tensor of shape (n_samples, ...) or Dataset
            A Dataset may yield ``x`` or ``(x, y)`` items; ``y`` is ignored.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def score(self, X, y=None, sample_weight=None):
        """Mean accuracy on (X, y).

        Parameters
        ----------
        X : array-like, torch.Tensor of shape (n_samples, ...) or Dataset
        y : array-like of shape (n_samples,) or None
            None when X is a Dataset of ``(x, y)`` pairs: its labels are used.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        float
        """
        from sklearn.metrics import accuracy_score

        check_is_fitted(self)
        predicted, y = self._predictions_and_labels(self.net_.module_, X, y)
        return float(accuracy_score(y, predicted, sample_weight=sample_weight))

    def _predictions_and_labels(self, module, X, y):
        """Predicted labels of ``module`` on X, and the true labels (y, or the Dataset's)."""
        read = [] if y is None and is_dataset(X) else None
        predicted = self.classes_[self._proba(module, X, labels=read).argmax(1)]
        if read is not None:
            if any(labels is None for labels in read):
                raise ValueError("X is a Dataset that yields inputs only: pass y.")
            y = concat_labels(read)
        elif y is None:
            raise ValueError(f"{type(self).__name__}.score needs y (or X as a Dataset of "
                             f"(x, y) pairs).")
        y = column_or_1d(as_numpy(y))
        if len(y) != len(predicted):
            raise ValueError(f"X has {len(predicted)} samples but y has {len(y)}.")
        return predicted, y

    def transform(self, X):
        """Embed X with the tuned net: the input of ``embedding_unit``, flattened.

        By default the input of the last unit, i.e. the penultimate features.

        Parameters
        ----------
        X : array-like, torch.Tensor of shape (n_samples, ...) or Dataset

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
        X : array-like, torch.Tensor of shape (n_samples, ...) or Dataset

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

    def pretrained_fingerprint(self):
        """A hash of what :meth:`pretrained_transform` computes.

        It covers the pretrained weights (adapters included; a new head,
        which comes after the embedding, left out) and the module whose
        input is the embedding, so that embeddings computed once (a
        retrieval gallery, say) can be reused for every tuner that gives the
        same hash.

        Returns
        -------
        str
        """
        check_is_fitted(self)
        # a new head starts from this fit's data, and lies after the cut: left out
        head = getattr(self, "_head", None)
        return f"{_surgery.fingerprint(self._pretrained, head)}@{self._embedding_cut()}"

    def _embedding_cut(self):
        """Dotted name of the module whose input :meth:`transform` returns."""
        return _embedding_cut(self._units, self.embedding_unit)

    def _embed(self, module, X, check=True):
        cut = self._embedding_cut()
        return self._outputs(
            module, X, lambda batch: _surgery.capture_input(module, cut, batch).flatten(1),
            check=check)

    def score_candidates(self, X, y=None, *, scoring=None):
        """Score of every candidate of the selection run kept in ``candidates_``.

        Every candidate with ``keep_candidates=True`` (how per-unit test
        curves, the paper's Figure 1, are drawn), else the selected one: its
        selection-run model, before any refit.

        Parameters
        ----------
        X : array-like, torch.Tensor of shape (n_samples, ...) or Dataset
            Inputs, shaped as for :meth:`fit`.
        y : array-like of shape (n_samples,) or None
            Their labels; None when X is a Dataset of ``(x, y)`` pairs.
        scoring : str, callable or None, default=None
            None: the accuracy, as :meth:`score`; else a scorer, as
            FlexTuner's ``scoring`` takes it (``tuner.scoring`` scores by
            what selected), called with each candidate standing in for the
            fitted tuner.

        Returns
        -------
        dict
            Keyed like ``candidates_``: the score of each candidate.
        """
        check_is_fitted(self, "candidates_")
        if scoring is not None:
            return self._scored_candidates(X, y, scorer_of(scoring))
        scores = {}
        for key, module in self.candidates_.items():
            predicted, labels = self._predictions_and_labels(module, X, y)
            if labels.dtype.kind in "OUS" and self.classes_.dtype.kind not in "OUS":
                raise ValueError("y holds strings, but the classes are numbers.")
            scores[key] = float(np.mean(predicted == labels))
        return scores

    def _scored_candidates(self, X, y, scorer):
        if y is None:
            if not is_dataset(X):
                raise ValueError(f"{type(self).__name__}.score_candidates needs y (or X as a "
                                 f"Dataset of (x, y) pairs).")
            _, y = read_dataset(X, loader_kwargs(self.base_net, "iterator_valid"),
                                self._eval_batch_size or _READ_BATCH_SIZE, "X")
            if y is None:
                raise ValueError("X is a Dataset that yields inputs only: pass y.")
        scores = {}
        for key, module in self.candidates_.items():
            candidate = copy.copy(self)  # the fitted tuner, holding this candidate
            candidate.net_ = self._net_holding(module)
            scores[key] = float(scorer(candidate, X, y))
        return scores


# -- helpers --------------------------------------------------------------------------------


def _embedding_cut(units, embedding_unit):
    """Dotted name of the module whose input is the embedding: ``embedding_unit``'s
    first module (the last unit's without one)."""
    unit_name = embedding_unit or units[-1].name
    return next(u for u in units if u.name == unit_name).modules[0]


def _eval_batch_size(per_sample_bytes, training_batch_size):
    """Samples per forward pass without gradients: as many as EVAL_BATCH_BYTES allows,
    and at least a training batch (skorch's -1, the whole set, counts as one sample)."""
    floor = max(int(training_batch_size or 1), 1)
    return max(floor, int(EVAL_BATCH_BYTES // max(per_sample_bytes, 1)))


def _training_callbacks(net):
    """The base net's callbacks that every training run applies (LRScheduler,
    GradientNormClipping); one warning names the others, which are not run."""
    from skorch.callbacks import GradientNormClipping, LRScheduler

    declared = getattr(net, "callbacks", None) or []
    if isinstance(declared, str):  # skorch's "disable"
        return ()
    initialized = dict(getattr(net, "callbacks_", None) or [])
    applied, ignored = [], []
    for item in declared:
        name, callback = item if isinstance(item, tuple) else (None, item)
        if name is None:
            name = callback.__name__ if isinstance(callback, type) else type(callback).__name__
        callback = initialized.get(name, callback)  # with its callbacks__* settings
        if isinstance(callback, type):
            callback = callback()
        if isinstance(callback, (LRScheduler, GradientNormClipping)):
            _check_monitor(name, callback)
            applied.append(callback)
        else:
            ignored.append(name)
    if ignored:
        warnings.warn(
            f"FlexTuner trains with its own loop, which applies base_net's LRScheduler and "
            f"GradientNormClipping callbacks but not the others ({', '.join(ignored)}). Early "
            f"stopping is FlexTuner's patience and max_epochs; to observe training, pass "
            f"on_epoch.", UserWarning, stacklevel=5)
    return tuple(applied)


def _warn_integer_images(X, name, stacklevel=6):
    """Integer images (uint8 in 0-255, say) are cast to float32 as they are: say so."""
    dtype = getattr(X, "dtype", None)
    integer = (dtype.is_floating_point is False and dtype != torch.bool if torch.is_tensor(X)
               else dtype is not None and np.dtype(dtype).kind in "ui")
    if integer and len(getattr(X, "shape", ())) >= 3 and len(X) and float(X.max()) > 1:
        warnings.warn(
            f"{name} holds integers ({str(dtype).replace('torch.', '')}, up to "
            f"{float(X.max()):g}), cast to float32 as they are. A network pretrained on "
            f"images scaled to [0, 1] needs {name} / 255 (or the scaling it was pretrained "
            f"with).", UserWarning, stacklevel=stacklevel)


def _takes_logits(net):
    criterion = getattr(net, "criterion_", None) or net.criterion
    return isinstance(criterion, torch.nn.CrossEntropyLoss) or (
        isinstance(criterion, type) and issubclass(criterion, torch.nn.CrossEntropyLoss))


#: What every training run records in the history an LRScheduler reads.
RECORDED = ("train_loss", "valid_loss", "valid_acc")


def _check_monitor(name, callback):
    """A ReduceLROnPlateau schedule must monitor what the runs record, as skorch's fit
    requires its history to hold it."""
    policy = getattr(callback, "policy", None)
    plateau = policy == "ReduceLROnPlateau" or (
        isinstance(policy, type) and issubclass(policy, torch.optim.lr_scheduler.ReduceLROnPlateau))
    monitor = getattr(callback, "monitor", None)
    if plateau and isinstance(monitor, str) and monitor not in RECORDED:
        raise ValueError(
            f"base_net's callback {name!r} (ReduceLROnPlateau) monitors {monitor!r}, which "
            f"FlexTuner's training runs do not record (skorch's own fit would fail with "
            f"\"{monitor!r} was not found in history\"). They record "
            f"{', '.join(map(repr, RECORDED))}.")


def _without_optimizers(net):
    """A shallow copy of ``net`` without its optimizers, for a pickle (they hold Adam's
    moments, say, and skorch pickles them with a copy of every weight). Fine-tuning never
    reads them: every run starts an optimizer of its own. :func:`_with_optimizers` gives
    the unpickled net fresh ones."""
    names = [name for name in getattr(net, "_optimizers", [])
             if getattr(net, name + "_", None) is not None]
    if not names:
        return net
    light = copy.copy(net)
    for name in names:
        setattr(light, name + "_", None)
    return light


def _with_optimizers(net):
    """An unpickled base net with fresh optimizers in place of those a pickle left out."""
    if getattr(net, "initialized_", False) and any(
            getattr(net, name + "_", None) is None for name in getattr(net, "_optimizers", [])):
        net.initialize_optimizer()
    return net


def _short_repr(value):
    """A parameter value as code, functions and classes by name."""
    if callable(value) and hasattr(value, "__qualname__"):
        return value.__qualname__
    return repr(value)


def _net_summary(net):
    """``base_net=NeuralNetClassifier(Conv4, 153,610 parameters)``: class and size."""
    module = getattr(net, "module_", None) or getattr(net, "module", None)
    if module is None:
        return f"base_net={net!r}"
    name = module.__name__ if isinstance(module, type) else type(module).__name__
    size = ""
    if isinstance(module, torch.nn.Module):
        try:
            size = f", {sum(p.numel() for p in module.parameters()):,} parameters"
        except ValueError:  # lazy modules before their first forward pass
            size = ", lazy"
    return f"base_net={type(net).__name__}({name}{size})"


def _budget(ctx, n_samples, max_epochs=None):
    """Optimizer steps of a run of ``max_epochs`` (default: ``ctx``'s) over ``n_samples``
    samples."""
    max_epochs = ctx.stopping.max_epochs if max_epochs is None else max_epochs
    return max_epochs * max(1, math.ceil(n_samples / ctx.optimization.batch_size))


def _write(line):
    """Print a line without breaking a progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(line)


class _Progress:
    """FlexTuner's progress bar (verbose >= 1), in optimizer steps of every run, the
    refit included.

    Its total starts as the plan's budgets (each planned run's at most, and the
    refit's at most); a run that stops early hands back what it did not use,
    so the bar's total, and tqdm's estimate of the time left, only ever come
    down to what remains. The bar names the run in progress.
    """

    def __init__(self, verbose, strategy):
        self.bar = None
        self.pending, self.refit_pending = [], 0  # budgets counted, not started yet
        self.n_planned, self.started, self.budget = None, 0, 0
        if verbose >= 1:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=0, desc=f"FlexTuner({strategy})", unit="step")

    def plan(self, n_runs, run_budget, refit_budget):
        """Count ``n_runs`` runs of at most ``run_budget`` steps (None: unknown) and a
        refit of at most ``refit_budget`` (0: none)."""
        self.n_planned = n_runs
        self.pending = [run_budget] * (n_runs or 0)
        self.refit_pending = refit_budget
        self._grow(sum(self.pending) + refit_budget)

    def start(self, name, budget, refit=False):
        if refit:
            counted, self.refit_pending = self.refit_pending, 0
            label = f"refit {name}"
        else:
            counted = self.pending.pop() if self.pending else 0
            self.started += 1
            label = (f"{name} ({self.started}/{self.n_planned})"
                     if self.n_planned and self.started <= self.n_planned else name)
        self.budget = budget
        self._grow(budget - counted)
        if self.bar is not None:
            self.bar.set_postfix_str(label, refresh=False)

    def step(self, n=1):
        if self.bar is not None:
            self.bar.update(n)

    def finish(self, used):
        self._grow(used - self.budget)  # the unused budget leaves the total

    def _grow(self, n):
        if self.bar is not None and n:
            self.bar.total += n
            self.bar.refresh()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if self.bar is not None:
            if exc_type is None:  # budgets are upper bounds: end full
                self.bar.total = self.bar.n
                self.bar.refresh()
            self.bar.close()


FlexTuner.__doc__ = FlexTuner.__doc__.replace(
    "STRATEGY_OPTIONS\n", "".join(option.docstring() + "\n" for option in OPTIONS.values())
).replace("{STRATEGY_NAMES}", "{" + ", ".join(f'"{name}"' for name in STRATEGIES) + "}")
