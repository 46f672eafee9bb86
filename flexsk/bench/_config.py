"""The bench's grid and settings: the configuration, its file, and the plan of runs."""

import json
from numbers import Integral

from sklearn.metrics import get_scorer_names
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from .._checks import IMAGE_SIZE, check_image_size
from .._files import atomic_write
from .._strategies import STRATEGIES as _REGISTRY
from ..datasets import COLOUR_SHIFTS, SHIFTS, SPLIT_SIZES
from ..zoo import ARCHS

__all__ = ["BENCH_VERSION", "STRATEGIES", "LABELS", "RECIPES", "REFERENCES",
           "RETRIEVAL_STRATEGIES",
           "MAP_K", "RETRIEVAL_SCORING",
           "SHIFT_RANDOM_STATE", "DEFAULTS", "QUICK", "DEFAULT_OUTPUT", "QUICK_OUTPUT",
           "ESTIMATOR_SETTINGS", "BenchError", "BenchConfigError", "make_config",
           "estimator_settings", "n_channels_of", "plan_runs", "describe_config", "read_config",
           "write_config"]

#: Version of the bench protocol; part of the config, so that results made by
#: another protocol are never resumed.
BENCH_VERSION = 4

#: The paper's grid: bench label (as written in the CSV) -> a strategy of FlexTuner's
#: registry, with ft-fc's two settings as ft-fc-1 and ft-fc-2.
_GRID = (("flex", "flex", {}), ("fast", "fast", {}), ("faster", "faster", {}),
         ("ft-fc-1", "ft-fc", {"n_fc_units": 1}), ("ft-fc-2", "ft-fc", {"n_fc_units": 2}),
         ("ft-ss", "ft-ss", {}), ("ft-all", "ft-all", {}), ("auto-rgn", "auto-rgn", {}),
         ("lp-ft", "lp-ft", {}), ("llrd", "llrd", {}), ("scratch", "ft-all", {}))
#: Bench label -> FlexTuner parameters.
STRATEGIES = {label: {"strategy": _REGISTRY[name].name, **extra} for label, name, extra in _GRID}
#: Column headers of the tables.
LABELS = {"flex": "flex", "fast": "fast", "faster": "faster", "ft-fc-1": "ft-fc (1)",
          "ft-fc-2": "ft-fc (2)", "ft-ss": "ft-ss", "ft-all": "ft-all", "auto-rgn": "auto-rgn",
          "lp-ft": "lp-ft", "llrd": "llrd", "scratch": "scratch"}
#: The recipes practitioners use (beyond the paper), against which flex is compared too.
RECIPES = ("auto-rgn", "lp-ft", "llrd")
#: Sanity references, not strategies: ``scratch`` trains every parameter (ft-all's
#: training) from re-initialized weights, so that a scenario where fine-tuning does
#: worse than training from scratch stands out. Never counted among the winners.
REFERENCES = ("scratch",)
#: Strategies whose runs get a retrieval mAP@10 (Table 4).
RETRIEVAL_STRATEGIES = ("ft-fc-1", "ft-all", "flex")

MAP_K = 10
#: ``--scoring`` for selection by retrieval: mAP@MAP_K against each scenario's source
#: gallery (:func:`flexsk.metrics.make_retrieval_scorer`).
RETRIEVAL_SCORING = f"map@{MAP_K}"
SHIFT_RANDOM_STATE = 0
#: The grid's defaults; None for ``max_epochs`` and ``patience`` leaves
#: FlexTuner's own defaults.
DEFAULTS = dict(nets=("conv4", "conv7"), shifts=None, ratios=(2, 10, 40), repeats=5,
                other_repeats=1, strategies=tuple(STRATEGIES), max_epochs=None,
                patience=None, image_size=16, scoring=None)
#: ``--quick``: a subset of 72 runs of the paper's strategies, about two minutes on 2
#: cores (103 s measured with one torch thread; docs/benchmarks.md gives the command).
QUICK = dict(nets=("conv4",), shifts=("blur", "rotation", "mnistm"), ratios=(2, 10),
             repeats=2, other_repeats=1,
             strategies=tuple(label for label, *_ in _GRID
                              if label not in ("auto-rgn", "lp-ft", "llrd")))
#: ``flexsk bench``'s results directory, unless ``--output`` gives another.
DEFAULT_OUTPUT = "bench-results"
#: The results directory of ``flexsk bench --quick``.
QUICK_OUTPUT = "bench-results/quick"

#: Settings passed on to FlexTuner when they are not None.
ESTIMATOR_SETTINGS = ("max_epochs", "patience")
#: Keys every configuration holds (those :func:`describe_config` states).
_CONFIG_KEYS = ("nets", "shifts", "ratios", "repeats", "strategies", "max_epochs", "patience",
                "image_size", "lr", "batch_size", "shift_random_state")


class BenchError(ValueError):
    """A bench request that cannot be carried out (bad option, no results, busy directory).

    Examples
    --------
    >>> from flexsk.bench import BenchError, write_reports
    >>> import tempfile
    >>> try:
    ...     write_reports(tempfile.mkdtemp(), log=None)
    ... except BenchError as error:
    ...     print("no results")
    no results
    """


class BenchConfigError(BenchError):
    """The output directory holds results made with another configuration.

    :func:`run_bench` raises it rather than mixing the rows of two grids in
    one ``results.csv``; use another ``output`` directory. It also raises it
    when ``config.json`` cannot be read.

    Examples
    --------
    >>> import tempfile
    >>> from flexsk.bench import BenchConfigError, make_config, run_bench
    >>> output = tempfile.mkdtemp()
    >>> small = make_config(nets=["conv4"], shifts=["blur"], ratios=[2], repeats=1,
    ...                     strategies=["ft-fc-1"], max_epochs=1)
    >>> run_bench(small, output, progress=False, log=None)
    1
    >>> try:
    ...     run_bench(dict(small, max_epochs=2), output, progress=False, log=None)
    ... except BenchConfigError:
    ...     print("refused")
    refused
    """


_COUNT = Interval(Integral, 1, None, closed="left")


@validate_params(
    {
        "nets": ["array-like", None],
        "shifts": ["array-like", None],
        "ratios": ["array-like", None],
        "repeats": [_COUNT, dict, None],
        "other_repeats": [_COUNT, None],
        "strategies": ["array-like", None],
        "max_epochs": [_COUNT, None],
        "patience": [_COUNT, None],
        "image_size": [IMAGE_SIZE, None],
        "quick": ["boolean"],
        "scoring": [StrOptions(set(get_scorer_names()) | {RETRIEVAL_SCORING}), None],
    },
    prefer_skip_nested_validation=True,
)
def make_config(*, nets=None, shifts=None, ratios=None, repeats=None, other_repeats=None,
                strategies=None, max_epochs=None, patience=None, image_size=None,
                quick=False, scoring=None):
    """The bench configuration: the grid and the training settings, as a JSON-able dict.

    Parameters
    ----------
    nets, shifts, ratios, strategies : sequence, optional
        The grid. Defaults: both zoo nets, every shift of
        :data:`flexsk.datasets.SHIFTS`, ratios 2, 10 and 40 images per class,
        every strategy of :data:`STRATEGIES` (``--quick``: conv4, blur,
        rotation and mnistm, ratios 2 and 10).
    repeats : int or dict, optional
        Repeats of the scarcest ratio (default 5; ``--quick`` 2), or a dict
        ratio -> repeats.
    other_repeats : int, optional
        Repeats of every other ratio (default 1).
    max_epochs, patience : int, optional
        Passed on to :class:`~flexsk.FlexTuner`; None (the default) leaves
        the estimator's defaults.
    image_size : int, optional
        Image side, a multiple of 8 (default 16).
    quick : bool, default=False
        Use the ``--quick`` grid for whatever is not given.
    scoring : str or None, default=None
        FlexTuner's ``scoring`` for every run: None (the validation
        accuracy), a scikit-learn scorer name, or ``"map@10"``
        (:data:`RETRIEVAL_SCORING`: retrieval mAP@10 against the scenario's
        source gallery). With one, each row's ``test_score`` is the
        selection run's pick's score on the test data; the configuration
        holds ``"scoring"`` only then.

    Returns
    -------
    dict
        The grid and settings, as :func:`run_bench` takes them and
        ``config.json`` stores them; ``repeats`` is keyed by the ratio as a
        string, and ``max_epochs`` and ``patience`` are None (null) where the
        estimator's defaults apply.

    Examples
    --------
    >>> from flexsk.bench import make_config
    >>> config = make_config(nets=["conv4"], shifts=["blur", "rotation"], ratios=[2, 10],
    ...                      repeats=3, strategies=["flex", "ft-all"])
    >>> config["repeats"], config["max_epochs"]
    ({'2': 3, '10': 1}, None)
    """
    base = dict(DEFAULTS, shifts=SHIFTS)
    if quick:
        base.update(QUICK)
    given = dict(nets=nets, shifts=shifts, ratios=ratios, repeats=repeats,
                 other_repeats=other_repeats, strategies=strategies, image_size=image_size)
    opts = {k: (base[k] if v is None else v) for k, v in given.items()}

    nets = _unique(opts["nets"], ARCHS, "net")
    shifts = _unique(opts["shifts"], SHIFTS, "shift")
    strategies = _unique(opts["strategies"], tuple(STRATEGIES), "strategy")
    pool = SPLIT_SIZES["target_train"]
    ratios = sorted(set(int(r) for r in opts["ratios"]))
    if not ratios or ratios[0] < 1 or ratios[-1] > pool:
        raise ValueError(f"ratios must be images per class between 1 and {pool} (the "
                         f"training pool), got {opts['ratios']!r}.")
    if isinstance(opts["repeats"], dict):
        repeats = {int(r): int(n) for r, n in opts["repeats"].items()}
        unused = sorted(set(repeats) - set(ratios))
        if unused:
            raise ValueError(f"repeats are given for ratios {unused} that are not in the grid's "
                             f"ratios {ratios}.")
        for r in ratios:
            repeats.setdefault(r, int(opts["other_repeats"]))
    else:
        repeats = {r: int(opts["other_repeats"]) for r in ratios}
        repeats[ratios[0]] = int(opts["repeats"])
    repeats = {str(r): repeats[r] for r in ratios}
    if min(repeats.values()) < 1:
        raise ValueError(f"every ratio needs at least 1 repeat, got {repeats}.")
    config = {
        "bench_version": BENCH_VERSION,
        "nets": nets,
        "shifts": shifts,
        "ratios": ratios,
        "repeats": repeats,
        "strategies": strategies,
        "max_epochs": None if max_epochs is None else int(max_epochs),
        "patience": None if patience is None else int(patience),
        "image_size": check_image_size("make_config", opts["image_size"], multiple_of=8),
        "lr": "zoo net (1e-3)",
        "batch_size": "zoo net (32)",
        "shift_random_state": SHIFT_RANDOM_STATE,
        "map_k": MAP_K,
    }
    if scoring is not None:  # absent otherwise, as in the configurations made before it
        config["scoring"] = scoring
    return config


def _unique(values, allowed, what):
    values = list(dict.fromkeys(values))
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ValueError(f"unknown {what}(s) {bad or values!r}; choose from {list(allowed)}.")
    return values


def estimator_settings(config):
    """The FlexTuner parameters a configuration sets (those not left to the estimator)."""
    return {name: config[name] for name in ESTIMATOR_SETTINGS if config.get(name) is not None}


def n_channels_of(shift):
    """The zoo nets' input channels for ``shift``: 3 for colour shifts, else 1."""
    return 3 if shift in COLOUR_SHIFTS else 1


@validate_params({"config": [dict]}, prefer_skip_nested_validation=True)
def plan_runs(config):
    """Every run of the grid, as dicts of the key columns, in execution order.

    Shifts are the outer loop and nets the next one, so that the fast conv4
    and the slower conv7 runs alternate and the progress bar's ETA is fair.

    Parameters
    ----------
    config : dict
        From :func:`make_config`.

    Returns
    -------
    list of dict
        One dict per run: ``net``, ``n_channels``, ``shift``, ``ratio``,
        ``repeat`` and ``strategy``.

    Examples
    --------
    >>> from flexsk.bench import make_config, plan_runs
    >>> config = make_config(nets=["conv4"], shifts=["blur"], ratios=[2], repeats=2,
    ...                      strategies=["flex", "ft-all"])
    >>> [(run["repeat"], run["strategy"]) for run in plan_runs(config)]
    [(0, 'flex'), (0, 'ft-all'), (1, 'flex'), (1, 'ft-all')]
    """
    runs = []
    for shift in config["shifts"]:
        for net in config["nets"]:
            for ratio in config["ratios"]:
                for repeat in range(config["repeats"][str(ratio)]):
                    for strategy in config["strategies"]:
                        runs.append(dict(net=net, n_channels=n_channels_of(shift),
                                         shift=shift, ratio=ratio, repeat=repeat,
                                         strategy=strategy))
    return runs


def _setting(config, name):
    value = config[name]
    return f"{name}=estimator default" if value is None else f"{name}={value}"


def describe_config(config):
    """One paragraph stating the grid and the settings."""
    repeats = ", ".join(f"{n} at ratio {r}" for r, n in config["repeats"].items())
    if all(config[name] is None for name in ESTIMATOR_SETTINGS):
        training = f"{' and '.join(ESTIMATOR_SETTINGS)}: estimator defaults"
    else:
        training = ", ".join(_setting(config, name) for name in ESTIMATOR_SETTINGS)
    return (f"nets {', '.join(config['nets'])} (3-channel for {', '.join(COLOUR_SHIFTS)}); "
            f"shifts {', '.join(config['shifts'])}; ratios {config['ratios']} images per "
            f"class; repeats: {repeats}; strategies {', '.join(config['strategies'])}; "
            f"{training}, "
            f"image_size={config['image_size']}, lr {config['lr']}, batch size "
            f"{config['batch_size']}, shift random_state={config['shift_random_state']}"
            f"{_scoring_text(config)}.")


def _scoring_text(config):
    scoring = config.get("scoring")
    return "" if scoring is None else f", selection by scoring={scoring!r}"


def read_config(path):
    """The configuration stored in ``path`` (``config.json``).

    Raises
    ------
    BenchConfigError
        If the file is not JSON or not a bench configuration.
    """
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchConfigError(f"{path} is damaged (not JSON: {exc}); restore it, or pass "
                               f"--output NEWDIR to start a new results directory.") from None
    missing = [k for k in _CONFIG_KEYS if k not in config] if isinstance(config, dict) else None
    if missing is None or missing:
        what = (f"it lacks {', '.join(missing)}" if missing
                else f"it holds a JSON {type(config).__name__}")
        raise BenchConfigError(f"{path} is not a flexsk bench configuration ({what}); restore "
                               f"it, or pass --output NEWDIR to start a new results directory.")
    return config


def write_config(path, config):
    """Store ``config`` in ``path``, all at once."""
    with atomic_write(path, text=True) as f:
        f.write(json.dumps(config, indent=2) + "\n")
