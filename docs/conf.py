"""Sphinx configuration of jfbbench's documentation site.

Build it offline, warnings as errors (nothing is fetched: no intersphinx, no remote image, no
MathJax; formulas are written in Unicode):

    python -m sphinx -W -b html docs docs/_build/html

The API reference is generated at each build from the modules the installed ``jfbbench``
has (one page per top-level module or package, in the order of the pipeline), so it follows
the package when modules move. The gallery (``docs/examples/plot_*.py``) runs at build time.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import jfbbench  # noqa: E402

project = "jfbbench"
author = "the jfbbench authors"
copyright = "the jfbbench authors, BSD-3-Clause"
version = release = jfbbench.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinxcontrib.bibtex",
]

bibtex_bibfiles = ["references.bib"]
bibtex_reference_style = "author_year"

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "examples/README.txt", "**/GALLERY_HEADER.rst"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Docstrings: numpy style (napoleon); prose types are not cross-references.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes" as fields: dataclass fields are not described twice
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
# A package documents what it defines; what it re-exports is documented where it is defined.
autodoc_default_options = {"members": True, "undoc-members": False, "ignore-module-all": True}
autodoc_mock_imports: list[str] = []

html_theme = "furo"
html_title = f"jfbbench {release}"
html_static_path: list[str] = []

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "plot_gallery": "True",
}

# --------------------------------------------------------------------------------------------
# API reference, generated from the package's modules.

#: Top-level modules in the order of the pipeline; a module not named here comes after, by name.
API_ORDER = (
    "problems",
    "estimators",
    "solvers",
    "linalg",
    "measure",
    "sweep",
    "tables",
    "environment",
    "runner",
    "training",
    "train",
    "theory",
    "equilibrium",
    "bounds",
    "validate",
    "front",
    "compare",
    "report",
    "plots",
    "data",
)
#: Not part of the library's API: the command line (documented in the user guide).
API_SKIP = ("cli",)


def _public_modules() -> dict[str, list[str]]:
    """Top-level name -> itself and its public submodules, for every public module of jfbbench."""
    groups: dict[str, list[str]] = {}
    for info in pkgutil.walk_packages(jfbbench.__path__, "jfbbench.", onerror=lambda name: None):
        parts = info.name.split(".")[1:]
        if any(p.startswith("_") for p in parts) or parts[0] in API_SKIP:
            continue
        groups.setdefault(parts[0], []).append(info.name)
    return groups


def _shadowed(module: str) -> bool:
    """Whether the package of ``module`` holds another object under its name (a function
    ``capabilities`` beside the module ``capabilities``): both would claim one name."""
    parent, _, leaf = module.rpartition(".")
    value = getattr(importlib.import_module(parent), leaf, None)
    return value is not None and value is not sys.modules.get(module)


def _api_pages(app: object) -> None:
    """Write ``docs/api/<module>.rst`` for every top-level module and ``docs/api/index.rst``."""
    out = DOCS / "api"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.rst"):
        old.unlink()
    groups = _public_modules()
    rank = {name: i for i, name in enumerate(API_ORDER)}
    tops = sorted(groups, key=lambda n: (rank.get(n, len(rank)), n))
    for top in tops:
        mods = sorted(groups[top])
        title = f"jfbbench.{top}"
        lines = [title, "=" * len(title), "", f".. automodule:: {title}", ""]
        for mod in mods[1:] if mods[0] == title else mods:
            lines += [mod, "-" * len(mod), "", f".. automodule:: {mod}"]
            if _shadowed(mod):  # the package holds another object by this name: index that one
                lines.append("   :no-index:")
            lines.append("")
        (out / f"{top}.rst").write_text("\n".join(lines))
    index = [
        "API reference",
        "=============",
        "",
        "Every public module of the package, in the order of the pipeline: problem, estimator,",
        "solvers, measurement, sweep and runner, training, theory, front, reports and plots. A",
        "package's page documents the functions it defines, then each of its modules; a name that a",
        "package re-exports (``jfbbench.estimators.DEQ``) is documented in the module that defines",
        "it (``jfbbench.estimators.deq.DEQ``).",
        "",
        ".. toctree::",
        "   :maxdepth: 1",
        "",
        *[f"   {top}" for top in tops],
        "",
    ]
    (out / "index.rst").write_text("\n".join(index))


def setup(app: object) -> None:
    app.connect("builder-inited", _api_pages)
