"""Sphinx configuration of the flexsk documentation.

Build: ``make -C docs html`` (warnings are errors), or
``sphinx-build -W --keep-going -b html docs docs/_build/html``.
``make -C docs html-noplot`` skips running the gallery.

Intersphinx links to scikit-learn, skorch, PyTorch, NumPy and Python need
their inventories from the internet; they are off unless
``FLEXSK_DOCS_INTERSPHINX=1`` is set, so that the offline build stays clean.
"""

import os
import sys
from pathlib import Path

# Before torch is imported (by autodoc or the gallery): one intra-op thread.
# The nets are tiny, and several threads on a busy 2-core machine are many
# times slower than one.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "sphinxext"))

import flexsk  # noqa: E402
import flexsk_docs  # noqa: E402

# -- Project -----------------------------------------------------------------------------

project = "flexsk"
author = "the flexsk developers"
copyright = "the flexsk developers"
release = flexsk.__version__
version = release

# -- General -----------------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # serves MathJax from _static: formulas render offline too
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    "sphinxext",
    # Pages that other pages include rather than link:
    "gpu_resnet.md",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.json",
    "auto_examples/*.md5",
]
default_role = "literal"
pygments_style = "sphinx"

# -- autodoc, autosummary, numpydoc --------------------------------------------------------

autosummary_generate = True
autodoc_default_options = {"members": False, "inherited-members": False}
autodoc_typehints = "none"
autoclass_content = "class"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False
# Every public function and class documents its parameters and shows an
# example; a docstring that does not fails the build (methods and constants
# are exempt).
numpydoc_validation_checks = {"PR01", "PR02", "EX01"}
numpydoc_validation_exclude = {
    r"\.[A-Z]\w*\.\w+$",  # methods and properties of classes
    r"\.[A-Z][A-Z0-9_]*$",  # constants
    r"^flexsk\.(metrics|datasets|zoo|plot|adapters|bench|strategies)$",  # module docstrings
    r"^flexsk\.strategies\.TrainingContext$",  # a Protocol: documented, never constructed
}

# -- MyST ----------------------------------------------------------------------------------

myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# -- intersphinx (opt-in: the inventories need the internet) -------------------------------

if os.environ.get("FLEXSK_DOCS_INTERSPHINX", "").lower() in ("1", "true", "yes"):
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "scipy": ("https://docs.scipy.org/doc/scipy", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
        "skorch": ("https://skorch.readthedocs.io/en/stable", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
        "joblib": ("https://joblib.readthedocs.io/en/stable", None),
        "matplotlib": ("https://matplotlib.org/stable", None),
    }

# -- sphinx-gallery ------------------------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "flexsk_docs.ExampleOrder",
    "reset_modules": ("matplotlib", "flexsk_docs.reset_torch"),
    "doc_module": ("flexsk",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"flexsk": None},
    "capture_repr": (),  # only what the examples print
    "min_reported_time": 1,
    "remove_config_comments": True,
    "show_memory": False,
    "matplotlib_animations": False,
    "image_srcset": [],
    "default_thumb_file": None,
}

# -- HTML ----------------------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"flexsk {release}"
html_static_path = ["_static"]
html_css_files = ["flexsk.css"]
html_show_sourcelink = False
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    # The download links render only on gallery pages.
    "secondary_sidebar_items": ["page-toc", "sg_download_links"],
    "header_links_before_dropdown": 7,
}
# No section navigation on the landing pages and on the example pages, whose
# code needs the width (the examples index lists them all).
html_sidebars = {"index": [], "install": [], "auto_examples/plot_*": []}
html_context = {"default_mode": "light"}


# -- Build-time steps ----------------------------------------------------------------------

def _strategy_table(app):
    """Write generated/strategy_table.inc from the benchmark CSV (docs/make_strategy_table.py)."""
    sys.path.insert(0, str(DOCS))
    import make_strategy_table

    make_strategy_table.main([])


def setup(app):
    app.connect("builder-inited", _strategy_table)
    app.connect("builder-inited", flexsk_docs.check_api_coverage)
