"""Sphinx configuration of bionn's documentation site.

Build it (warnings are errors, as in CI) from the repository root:

    pip install -r docs/requirements.txt
    python -m sphinx -W --keep-going -b html docs docs/_build/html

Nothing here names a rule family: pages in ``docs/rules/`` join the site through a glob, every
module of ``bionn`` joins the API reference (generated at build time by ``_ext/bionn_docs.py``),
and every script in ``docs/examples/`` runs as a gallery example.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

import bionn  # noqa: E402

# the examples' output shows what they print, not the Trainer's per-epoch log lines
logging.getLogger("bionn").setLevel(logging.WARNING)

project = "bionn"
author = "the bionn authors"
copyright = "the bionn authors"  # noqa: A001
release = bionn.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
    "bionn_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_templates", "examples/GALLERY_HEADER.rst", "**/*.ipynb"]
templates_path = ["_templates"]

# MyST: the markdown pages render as they read on GitHub.
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# API reference: autosummary writes one page per module (recursively, so a new module joins by
# itself), autodoc fills it from the docstrings, napoleon reads their Google-style sections.
autosummary_generate = True
autosummary_imported_members = False
# Each object is documented once, on the page of the module that defines it (a package's
# ``__all__`` re-exports are listed on the package's page, not documented twice).
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
napoleon_use_ivar = True
napoleon_custom_sections = [("Class attributes", "params_style"), ("Class data", "params_style")]

# Examples gallery: every script in docs/examples/ runs at build time (digits, a few seconds
# each) and its figures and printed output are embedded.
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": re.escape("/") + r"[^/]+\.py$",
    "ignore_pattern": r"__init__\.py",
    "download_all_examples": False,
    "remove_config_comments": True,
    "reset_modules": ("matplotlib", "bionn_docs.reset_registry"),
    "reset_modules_order": "both",
    "min_reported_time": 1,
    "capture_repr": (),
}

html_theme = "furo"
html_title = f"bionn {release}"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"  # a page without one logs a 404 for /favicon.ico
html_show_sourcelink = False

# Links from a markdown page to a file outside docs/ (for GitHub readers) are rewritten by
# bionn_docs: a module of src/bionn/ to its API page, any other file of the repository to a copy
# of it downloaded with the site.
bionn_repository_root = str(DOCS.parent)
