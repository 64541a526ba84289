"""Component kinds by name: each spec section's `kind` resolves through a registry, so a new
backend, retriever, reranker, rewriter, expander or compressor is one `register` call, and a
pipeline YAML can name a user's own class by import path (`kind: mypkg.stages:MyReranker`) with
its own typed `options`.

A maker takes the section's spec and the pipeline's shared `Parts` (embedder, store,
generator, each made on first use) and returns the live component; makers import their modules
when called, so listing or checking kinds loads nothing heavy.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# Constructor fields a user's class may declare to receive the pipeline's shared components.
INJECTED = ("embedder", "generator", "store", "retriever")


class Parts:
    """The shared components a maker may ask for, each made (or looked up) on first access."""

    def __init__(self, **factories: Callable[[], Any]) -> None:
        self._factories = factories
        self._made: dict[str, Any] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._factories

    def get(self, name: str) -> Any:
        if name not in self._made:
            if name not in self._factories:
                raise ValueError(f"no shared {name} is available here")
            self._made[name] = self._factories[name]()
        return self._made[name]

    @property
    def embedder(self) -> Any:
        return self.get("embedder")

    @property
    def generator(self) -> Any:
        return self.get("generator")

    @property
    def store(self) -> Any:
        return self.get("store")


Maker = Callable[[Any, Parts], Any]


class Registry:
    """The makers of one component kind (generators, retrievers, rerankers, rewriters,
    expanders, compressors)."""

    def __init__(self, what: str, methods: tuple[str, ...] = ("invoke", "batch")) -> None:
        self.what = what
        self.methods = methods  # what the pipeline calls on a component of this kind
        self._makers: dict[str, Maker] = {}

    def register(self, name: str, maker: Maker | None = None) -> Any:
        """Add `name`; usable as `registry.register("x", fn)` or as a decorator."""
        if IMPORT_PATH.match(name):
            raise ValueError(f"{self.what} kind {name!r}: a registered name has no ':'")

        def add(fn: Maker) -> Maker:
            self._makers[name] = fn
            return fn

        return add if maker is None else add(maker)

    def names(self) -> list[str]:
        return sorted(self._makers)

    def check(self, kind: str) -> str:
        """`kind` if it is registered or looks like an import path; else a one-line reason."""
        if kind in self._makers or IMPORT_PATH.match(kind):
            return kind
        known = ", ".join(self.names())
        raise ValueError(
            f"unknown {self.what} {kind!r}; known: {known}, or a 'module:Class' import path"
        )

    def check_class(self, cls: type) -> None:
        """A ValueError unless a user's class has the methods the pipeline calls on this kind
        of component (any langchain Runnable has them)."""
        missing = [m for m in self.methods if not callable(getattr(cls, m, None))]
        if missing:
            raise ValueError(
                f"{cls.__module__}:{cls.__qualname__} is not a {self.what}: it lacks "
                f"{', '.join(missing)} (methods every langchain Runnable has)"
            )

    def build(self, kind: str, section: Any, parts: Parts) -> Any:
        if kind in self._makers:
            return self._makers[kind](section, parts)
        return build_user_class(import_class(kind), getattr(section, "options", {}), parts)


def import_class(path: str) -> type:
    """The class at `module:Class`; a ValueError names what is missing."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} for {path!r}: {exc}") from exc
    cls = getattr(module, attr, None)
    if not isinstance(cls, type):
        raise ValueError(f"{module_name!r} has no class {attr!r}")
    return cls


def options_model(cls: type) -> type[BaseModel]:
    """The typed options a user's class accepts from YAML: its pydantic fields, less the shared
    components the builder injects. A class that is not a pydantic model takes no options."""
    fields = getattr(cls, "model_fields", {})
    declared = {
        name: (info.annotation, info) for name, info in fields.items() if name not in INJECTED
    }
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return create_model(f"{cls.__name__}Options", __config__=config, **declared)  # type: ignore[call-overload]


def build_user_class(cls: type, options: Mapping[str, Any], parts: Parts) -> Any:
    """An instance of a user's class: its options plus the shared components it declares."""
    fields = getattr(cls, "model_fields", {})
    shared = {name: parts.get(name) for name in INJECTED if name in fields and name in parts}
    return cls(**options, **shared)


GENERATORS = Registry("generator", methods=("invoke", "batch", "stream"))
RETRIEVERS = Registry("retriever")
RERANKERS = Registry("reranker")
REWRITERS = Registry("rewrite mode")
EXPANDERS = Registry("expand mode")
COMPRESSORS = Registry("compress mode")
