"""Build-time helpers of the flexsk documentation.

- :func:`reset_torch`: sphinx-gallery's per-example reset (one torch thread,
  fixed seeds), so the gallery runs the same and fast on any machine.
- :class:`ExampleOrder`: the order of the gallery examples.
- :func:`check_api_coverage`: fails the build (a warning under ``-W``) when a
  public name of a documented module is missing from ``api.rst``, or when a
  fitted attribute of :class:`flexsk.FlexTuner` is missing from its
  ``Attributes`` section, so the reference cannot drift from the code.
"""

import importlib
import re
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent

#: Gallery order: from first steps to the paper's figures to your own network.
EXAMPLES = [
    "plot_quickstart.py",
    "plot_grid_search_strategies.py",
    "plot_pipeline.py",
    "plot_pipeline_validation.py",
    "plot_dataset_augmentation.py",
    "plot_transformer_blocks.py",
    "plot_retrieval.py",
    "plot_unit_scores.py",
    "plot_selection_heatmap.py",
    "plot_custom_network.py",
]

#: Modules whose ``__all__`` the API reference must cover.
API_MODULES = ["flexsk", "flexsk.metrics", "flexsk.datasets", "flexsk.zoo", "flexsk.plot",
               "flexsk.adapters", "flexsk.bench"]


def reset_torch(gallery_conf, fname):
    """Before each example: one torch thread and fixed seeds."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)


class ExampleOrder:
    """Sort key of the gallery: :data:`EXAMPLES` first, in order, then by name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        name = Path(filename).name
        return (EXAMPLES.index(name), name) if name in EXAMPLES else (len(EXAMPLES), name)

    def __repr__(self):
        return "ExampleOrder"


def _documented_names(api_rst):
    """Fully qualified names listed in the autosummary tables of ``api.rst``."""
    names, module = set(), None
    for line in api_rst.read_text().splitlines():
        match = re.match(r"\.\. currentmodule:: (\S+)", line.strip())
        if match:
            module = match.group(1)
            continue
        match = re.match(r"^ {3,}(~?[\w.]+)\s*$", line)
        if match and module and not line.strip().startswith(":"):
            names.add(f"{module}.{match.group(1).lstrip('~')}")
    return names


def _fitted_attributes(source):
    """Names ``self.<name>_ = ...`` assigned in ``FlexTuner``'s source."""
    return set(re.findall(r"self\.([a-z][a-z0-9_]*[a-z0-9]_)\s*=(?!=)", source))


def check_api_coverage(app):
    """Warn about public names missing from api.rst and undocumented fitted attributes."""
    documented = _documented_names(DOCS / "api.rst")
    for module_name in API_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            if name.startswith("__"):
                continue
            if f"{module_name}.{name}" not in documented:
                logger.warning(f"api.rst does not list the public name {module_name}.{name}; "
                               f"add it to an autosummary table.", type="flexsk",
                               subtype="api")

    from numpydoc.docscrape import ClassDoc

    import flexsk

    attributes = {item.name.split(":")[0].strip()
                  for item in ClassDoc(flexsk.FlexTuner, config={})["Attributes"]}
    source = (ROOT / "flexsk" / "_tuner.py").read_text()
    for name in sorted(_fitted_attributes(source) - attributes):
        logger.warning(f"FlexTuner sets the fitted attribute {name!r} but its docstring's "
                       f"Attributes section does not document it.", type="flexsk",
                       subtype="attributes")
