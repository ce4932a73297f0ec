"""Sphinx extension: serve MathJax 3 from the pinned ``django-static-mathjax``
package instead of a CDN, so the site typesets equations offline (and in the
browser test, which has no network)."""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError

MATHJAX_PATH = "mathjax/es5/tex-chtml.js"  # relative to _static
# What tex-chtml.js loads: itself, its input/output components and fonts, the menu.
_PARTS = ("tex-chtml.js", "input", "output", "ui", "a11y", "adaptors")


def _source() -> Path:
    try:
        import mathjax  # the django-static-mathjax distribution
    except ImportError as err:
        raise ExtensionError(
            "MathJax 3 is needed to build the site offline: "
            "pip install django-static-mathjax==3.2.2.1 (`make site` installs it)"
        ) from err
    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def _config_inited(app: Sphinx, config: Config) -> None:
    _source()
    config.mathjax_path = MATHJAX_PATH


def _copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    src = _source()
    dest = Path(app.outdir) / "_static" / "mathjax" / "es5"
    dest.mkdir(parents=True, exist_ok=True)
    for part in _PARTS:
        if (src / part).is_dir():
            shutil.copytree(src / part, dest / part, dirs_exist_ok=True)
        else:
            shutil.copy2(src / part, dest / part)


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _config_inited)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
