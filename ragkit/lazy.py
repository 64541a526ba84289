"""Lazy package exports: a package lists which module defines each public name, and the name is
imported on first access, so `import ragkit` (or a subpackage) loads no model library."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, by_module: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], Any], list[str]]:
    """A module `__getattr__` for `package` and its `__all__`, from the public names each
    defining module provides."""
    exports = {name: module for module, names in by_module.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(exports[name]), name)

    return __getattr__, sorted(exports)
