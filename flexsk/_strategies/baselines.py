"""The paper's baselines (Section 5.1): ft-all, ft-fc and ft-ss."""

from .._checks import count
from ._option import Option
from ._outcome import Outcome

__all__ = ["ft_all", "ft_fc", "ft_ss", "one_run", "N_FC_UNITS"]

N_FC_UNITS = Option("n_fc_units", 1, (count(1),), "int",
                    'Number of last units that ``"ft-fc"`` tunes.')


def ft_all(ctx):
    """Fine-tune every parameter of the net."""
    return Outcome("all", {"all": ctx.tune("all")})


def ft_fc(ctx, *, n_fc_units=N_FC_UNITS.default):
    """Fine-tune the last ``n_fc_units`` units together (the paper's ft-fc (1) and (2))."""
    if n_fc_units > len(ctx.units):
        raise ValueError(f"n_fc_units={n_fc_units} exceeds the {len(ctx.units)} units "
                         f"{[unit.name for unit in ctx.units]}.")
    last = tuple(unit.name for unit in ctx.units[-n_fc_units:])
    key = last[0] if n_fc_units == 1 else last
    return Outcome(key, {key: ctx.tune(key)})


def ft_ss(ctx):
    """Scale and shift (Meta-Transfer Learning), trained with the last unit.

    Every conv kernel outside the last unit gets a scale per (out, in)
    channel pair, every linear layer one per output feature (initialized to
    1), and every bias a shift (initialized to 0). They are trained together
    with the whole last unit, then folded into plain weights (the training
    primitive's ``"ss"`` key).
    """
    return Outcome("ss", {"ss": ctx.tune("ss")})


def one_run(n_units, **options):
    return 1
