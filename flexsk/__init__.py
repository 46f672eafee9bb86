"""flexsk: flex-tuning for scikit-learn.

Fine-tune the one unit of a pretrained network that a shifted target domain
needs, and choose it from the data (Royer & Lampert, WACV 2020).
"""

from ._config import config_context, get_config, set_config
from ._exceptions import SelectionWarning
from ._preview import UnitPreview, preview_units
from ._training import EpochRecord
from ._tuner import FlexTuner

__version__ = "0.4.0.dev0"

__all__ = ["EpochRecord", "FlexTuner", "SelectionWarning", "UnitPreview", "config_context",
           "get_config", "preview_units", "set_config", "__version__"]
