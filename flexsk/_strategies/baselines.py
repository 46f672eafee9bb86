"""The paper's baselines (Section 5.1): ft-all, ft-fc and ft-ss."""

from ._defaults import N_FC_UNITS
from ._outcome import Outcome

__all__ = ["ft_all", "ft_fc", "ft_ss", "one_run"]


def ft_all(ft):
    """Fine-tune every parameter of the net."""
    return Outcome("all", {"all": ft.tune("all")})


def ft_fc(ft, *, n_fc_units=N_FC_UNITS):
    """Fine-tune the last ``n_fc_units`` units together (the paper's ft-fc (1) and (2))."""
    last = tuple(unit.name for unit in ft.units[-n_fc_units:])
    key = last[0] if n_fc_units == 1 else last
    return Outcome(key, {key: ft.tune(key)})


def ft_ss(ft):
    """Scale and shift (Meta-Transfer Learning), trained with the last unit.

    Every conv kernel outside the last unit gets a scale per (out, in)
    channel pair, every linear layer one per output feature (initialized to
    1), and every bias a shift (initialized to 0). They are trained together
    with the whole last unit, then folded into plain weights (the training
    primitive's ``"ss"`` key).
    """
    return Outcome("ss", {"ss": ft.tune("ss")})


def one_run(n_units, **options):
    return 1
