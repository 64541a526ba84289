"""Where the files that ship with ragkit live: the named pipelines and the bundled suites.

In the repository they are top-level folders (`pipelines/`, `evals/`), where a reader looks for
them; the wheel's build configuration maps the same folders into the package
(`ragkit/pipelines/`, `ragkit/evals/`). One lookup serves both, so a name resolves the same way
from a checkout and from an installed wheel.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """The folder `name` (`"pipelines"` or `"evals"`): inside the installed package, else at the
    top of the checkout this package was imported from.

    The checkout is recognised by its `pyproject.toml`, so an unrelated folder of the same name
    beside an installed package (site-packages holds many) is never taken for ours.
    """
    inside = _PACKAGE / name
    if inside.is_dir():
        return inside
    root = _PACKAGE.parent
    if (root / "pyproject.toml").is_file() and (root / name).is_dir():
        return root / name
    return inside  # absent: callers report the name they looked for


def pipelines_dir() -> Path:
    """Named pipeline specs; `RAGKIT_PIPELINES` points elsewhere (tests, a team's own set)."""
    override = os.environ.get("RAGKIT_PIPELINES")
    return Path(override) if override else shipped_dir("pipelines")


def evals_dir() -> Path:
    """Suites found by name (`bundled` is `evals/bundled/suite.yaml`)."""
    return shipped_dir("evals")
