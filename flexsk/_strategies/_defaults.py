"""The strategies' options' defaults, written once: FlexTuner's signature uses them too."""

__all__ = ["N_FC_UNITS", "MAX_UNITS", "PAIR_MARGIN", "HALVING_FACTOR", "HALVING_MIN_EPOCHS"]

N_FC_UNITS = 1
MAX_UNITS = 1
PAIR_MARGIN = 0.01
HALVING_FACTOR = 3
HALVING_MIN_EPOCHS = 3
