"""The strategy record: one per strategy, in one registry."""

from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints

from .._training import Tuned
from ._option import Option
from ._outcome import Outcome
from .combine import MAX_UNITS, PAIR_MARGIN, add_units

__all__ = ["Strategy", "SINGLE_UNIT_OPTIONS"]

#: The options of every strategy that ends on a single unit: growing its pick.
SINGLE_UNIT_OPTIONS = (MAX_UNITS, PAIR_MARGIN)


class Strategy:
    """A selection strategy: its schedule and what FlexTuner needs to know about it.

    Parameters
    ----------
    name : str
        The ``strategy`` parameter's value for a built-in; a label otherwise
        (progress bar, messages).
    schedule : callable
        ``schedule(ctx, **options) -> Outcome``: a short schedule over a
        :class:`~flexsk.strategies.TrainingContext`.
    n_runs : callable or None, default=None
        ``n_runs(n_units, **options) -> int``: the training runs it takes (an
        upper bound where the schedule can stop early), for progress bars;
        None when unknown.
    single_unit : bool, default=False
        Whether it ends on a single unit, so that ``max_units`` and
        ``pair_margin`` can grow its pick.
    options : tuple of Option
        The settings its schedule takes, each passed as a keyword. A
        built-in strategy's are :class:`~flexsk.FlexTuner` parameters; yours
        are this record's: set them here (``Strategy(..., k=5)``) or with
        ``FlexTuner.set_params(strategy__k=5)``, which
        :class:`~sklearn.model_selection.GridSearchCV` uses too.
    **values
        Values of ``options``; an option without one takes its default.

    Examples
    --------
    >>> from numbers import Integral
    >>> from sklearn.utils._param_validation import Interval
    >>> from flexsk.strategies import Option, Outcome, Strategy
    >>> def last_k(ctx, *, k):
    ...     names = tuple(unit.name for unit in ctx.units[-k:])
    ...     key = names[0] if k == 1 else names
    ...     return Outcome(key, {key: ctx.tune(key)})
    >>> units = Option("k", 1, (Interval(Integral, 1, None, closed="left"),), "int",
    ...                "Last units tuned together.")
    >>> Strategy("last-k", last_k, options=(units,), k=2)
    Strategy('last-k', last_k, k=2)
    """

    def __init__(self, name, schedule, n_runs=None, single_unit=False, options=(), **values):
        self.name = name
        self.schedule = schedule
        self.n_runs = n_runs
        self.single_unit = single_unit
        self.options = options
        self.values = values

    # -- scikit-learn's parameter protocol: clone, set_params, GridSearchCV --------------

    def get_params(self, deep=True):
        return {"name": self.name, "schedule": self.schedule, "n_runs": self.n_runs,
                "single_unit": self.single_unit, "options": self.options, **self.values}

    def set_params(self, **params):
        declared = {option.name for option in self._declared()}
        for key, value in params.items():
            if key in ("name", "schedule", "n_runs", "single_unit", "options"):
                setattr(self, key, value)
            elif key in declared:
                self.values[key] = value
            else:
                raise ValueError(f"Invalid parameter {key!r} for strategy {self.name!r}: it "
                                 f"declares the options {sorted(declared)}.")
        return self

    def __eq__(self, other):
        return type(other) is type(self) and self.get_params() == other.get_params()

    def __hash__(self):
        return hash((self.name, self.schedule))

    def __repr__(self):
        schedule = getattr(self.schedule, "__qualname__", repr(self.schedule))
        values = "".join(f", {key}={value!r}" for key, value in self.values.items())
        return (f"Strategy({self.name!r}, {schedule}"
                + (", single_unit=True" if self.single_unit else "") + values + ")")

    # -- options ---------------------------------------------------------------------------

    def _declared(self):
        options = list(self.options)
        wrong = [option for option in options if not isinstance(option, Option)]
        if wrong:
            raise TypeError(f"Strategy {self.name!r}: options must be "
                            f"flexsk.strategies.Option records (a name, a default, its "
                            f"constraints and docstring); got {wrong[0]!r}.")
        return options + (list(SINGLE_UNIT_OPTIONS) if self.single_unit else [])

    def own_options(self, builtin=()):
        """The values of this record's own options (a user strategy's), checked against
        their constraints: name -> value. Options named in ``builtin`` (FlexTuner's
        parameters) are left out."""
        declared = {option.name: option for option in self._declared()
                    if option.name not in builtin and option not in SINGLE_UNIT_OPTIONS}
        unknown = sorted(set(self.values) - set(declared))
        if unknown:
            raise ValueError(f"Strategy {self.name!r} got values for {unknown}, which are "
                             f"not among its options {sorted(declared)}.")
        chosen = {name: self.values.get(name, option.default)
                  for name, option in declared.items()}
        try:
            validate_parameter_constraints(
                {name: list(option.constraints) for name, option in declared.items()},
                chosen, caller_name=f"Strategy {self.name!r}")
        except InvalidParameterError as exc:
            raise InvalidParameterError(str(exc)) from None
        return chosen

    # -- running ---------------------------------------------------------------------------

    def __call__(self, ctx, *, max_units=MAX_UNITS.default, pair_margin=PAIR_MARGIN.default,
                 **options):
        """Run the schedule with its own options; grow a single unit up to ``max_units``."""
        names = [option.name for option in self.options]
        outcome = self.schedule(ctx, **{k: options[k] for k in names if k in options})
        if not isinstance(outcome, Outcome):
            raise TypeError(f"The schedule of strategy {self.name!r} returned "
                            f"{type(outcome).__name__}; a schedule must return a "
                            f"flexsk.strategies.Outcome.")
        wrong = [key for key, tuned in outcome.tuned.items() if not isinstance(tuned, Tuned)]
        if wrong:
            raise TypeError(f"The schedule of strategy {self.name!r} returned Outcome.tuned "
                            f"values that are not Tuned (the result of ctx.tune) for "
                            f"{wrong}.")
        mislabelled = {key: tuned.key for key, tuned in outcome.tuned.items()
                       if tuned.key is not None and tuned.key != key}
        if mislabelled:
            key, trained = next(iter(mislabelled.items()))
            raise ValueError(f"The schedule of strategy {self.name!r} returned the run of "
                             f"{trained!r} under the key {key!r} in Outcome.tuned: a model is "
                             f"filed under the key it trained (the key passed to ctx.tune).")
        if outcome.selected not in outcome.tuned:
            raise ValueError(f"The schedule of strategy {self.name!r} selected "
                             f"{outcome.selected!r}, which is not among the models it returns "
                             f"in Outcome.tuned ({list(outcome.tuned)}).")
        if self.single_unit:
            outcome = add_units(ctx, outcome, max_units=max_units, pair_margin=pair_margin)
        return outcome

    def total_runs(self, n_units, *, max_units=MAX_UNITS.default, **options):
        """Upper bound of the training runs, pairs of ``max_units`` included; None if
        unknown."""
        if self.n_runs is None:
            return None
        names = [option.name for option in self.options]
        runs = self.n_runs(n_units, **{k: options[k] for k in names if k in options})
        if self.single_unit:
            runs += sum(max(n_units - k, 0) for k in range(1, max_units))
        return runs


Strategy.__module__ = "flexsk.strategies"  # documented, and named in errors, there
