"""Component kinds by name: each spec section's `kind` resolves through a registry, so a new
backend, retriever, reranker, rewriter, expander or compressor is one `register` call, and a
pipeline YAML can name a user's own class by import path (`kind: mypkg.stages:MyReranker`) with
its own typed `options`.

A kind is one `Kind` entry: its maker, its typed options (a pydantic model of the section keys
it reads, checked when a spec loads) and what it uses (the pipeline's generator, embedder or
store, or a model of its own to load), from which the tuner and the benchmarks tell which
variants call a model. A maker takes the section's spec and the pipeline's shared `Parts`
(embedder, store, generator, each made on first use) and returns the live component; makers
import their modules when called, so listing or checking kinds loads nothing heavy.
"""

from __future__ import annotations

import importlib
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# Constructor fields a user's class may declare to receive the pipeline's shared components.
INJECTED = ("embedder", "generator", "store", "retriever")
# What a kind may use: the pipeline's shared generator, embedder, store or retriever (a stage
# using the retriever wraps it and takes its place), or a `model` of its own that it loads (or
# downloads) when made.
USES = ("generator", "embedder", "store", "retriever", "model")


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


@dataclass(frozen=True)
class Kind:
    """One registered kind: its maker, the typed options it reads from its section (None: only
    the keys every kind of the section shares) and what it uses (see `USES`)."""

    name: str
    maker: Maker
    options: type[BaseModel] | None = None
    uses: frozenset[str] = field(default_factory=frozenset)
    doc: str = ""


class Registry:
    """The kinds of one component (generators, retrievers, rerankers, rewriters, expanders,
    compressors). The built-in kinds register when `builtins` (a module) is first imported,
    which happens on the first look-up, so importing the registry loads nothing."""

    def __init__(
        self,
        what: str,
        section: str,
        methods: tuple[str, ...] = ("invoke", "batch"),
        builtins: str = "ragkit.components",
        key: str = "kind",
    ) -> None:
        self.what = what
        self.section = section  # the spec section whose `key` (`kind` or `mode`) names one
        self.key = key
        self.methods = methods  # what the pipeline calls on a component of this kind
        self.builtins = builtins
        self._kinds: dict[str, Kind] = {}

    def register(
        self,
        name: str,
        maker: Maker | None = None,
        *,
        options: type[BaseModel] | None = None,
        uses: Iterable[str] = (),
        doc: str | None = None,
    ) -> Any:
        """Add kind `name`; usable as `registry.register("x", fn, options=XOptions)` or as a
        decorator. `options` is a pydantic model of the section keys the kind reads (a key it
        adds beyond the section's own is accepted in YAML for this kind only); `uses` names what
        it needs from `USES`."""
        if IMPORT_PATH.match(name):
            raise ValueError(f"{self.what} kind {name!r}: a registered name has no ':'")
        used = frozenset(uses)
        if not used <= set(USES):
            raise ValueError(
                f"{self.what} kind {name!r}: uses {sorted(used - set(USES))}; known: {USES}"
            )

        def add(fn: Maker) -> Maker:
            text = doc if doc is not None else (fn.__doc__ or "").strip().split("\n\n")[0]
            self._kinds[name] = Kind(name, fn, options, used, " ".join(text.split()))
            return fn

        return add if maker is None else add(maker)

    def _loaded(self) -> dict[str, Kind]:
        importlib.import_module(self.builtins)  # registers the built-ins, once
        return self._kinds

    def names(self) -> list[str]:
        return sorted(self._loaded())

    def kinds(self) -> list[Kind]:
        return [self._loaded()[n] for n in self.names()]

    def entry(self, kind: str) -> Kind | None:
        """The registered entry of `kind`, or None for a class named by import path."""
        return self._loaded().get(self.check(kind))

    def check(self, kind: str) -> str:
        """`kind` if it is registered or looks like an import path; else a one-line reason."""
        if kind in self._loaded() or IMPORT_PATH.match(kind):
            return kind
        known = ", ".join(self.names())
        raise ValueError(
            f"unknown {self.what} {kind!r}; known: {known}, or a 'module:Class' import path"
        )

    def option_keys(self) -> set[str]:
        """Every key some registered kind reads (a kind registered from outside the package may
        add keys its section does not declare)."""
        return {k for kind in self.kinds() if kind.options for k in kind.options.model_fields}

    def describe(self) -> list[str]:
        """One line per kind: name, what it is, the keys it reads and what it uses."""
        lines = []
        for kind in self.kinds():
            keys = ", ".join(kind.options.model_fields) if kind.options else "none"
            uses = ", ".join(u for u in USES if u in kind.uses) or "nothing shared"
            lines.append(f"{kind.name}: {kind.doc or '-'} (keys: {keys}; uses: {uses})")
        return lines

    def uses(self, kind: str, what: str) -> bool:
        """Whether `kind` uses `what` (one of `USES`): a registered kind says so; a user's class
        uses the shared components it declares as fields, and loads no model of its own."""
        entry = self.entry(kind)
        if entry is not None:
            return what in entry.uses
        fields = getattr(import_class(kind), "model_fields", {})
        return what in fields and what in INJECTED

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
        entry = self.entry(kind)
        if entry is not None:
            return entry.maker(section, parts)
        return build_user_class(import_class(kind), getattr(section, "options", {}), parts)


def section_options(
    section: type[BaseModel],
    name: str,
    keys: Sequence[str],
    required: Mapping[str, str] | None = None,
) -> type[BaseModel]:
    """A kind's options model made of some of its section's own fields, so each setting is
    declared once (on the section) and each kind says which ones it reads. A key in `required`
    must be given for this kind; its value is the hint the error adds."""
    fields: dict[str, Any] = {}
    for key in keys:
        info = section.model_fields[key]
        if required is not None and key in required:
            typed = _without_none(info.annotation)
            if info.metadata:  # the section's constraints (gt, le) still hold
                typed = typing.Annotated[typed, *info.metadata]
            fields[key] = (typed, Field(description=required[key] or None))
        else:
            fields[key] = (info.annotation, info)
    config = ConfigDict(extra="forbid")
    return create_model(name, __config__=config, **fields)


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kept = [a for a in typing.get_args(annotation) if a is not type(None)]
        return kept[0] if len(kept) == 1 else typing.Union[tuple(kept)]  # noqa: UP007
    return annotation


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


_STAGES = "ragkit.stages.factory"
GENERATORS = Registry("generator", "generator", methods=("invoke", "batch", "stream"))
RETRIEVERS = Registry("retriever", "retriever")
REWRITERS = Registry("rewrite mode", "rewrite", builtins=_STAGES, key="mode")
RERANKERS = Registry("reranker", "rerank", builtins=_STAGES)
EXPANDERS = Registry("expand mode", "expand", builtins=_STAGES, key="mode")
COMPRESSORS = Registry("compress mode", "compress", builtins=_STAGES, key="mode")
# Each pluggable spec section and the registry its `kind` (or `mode`) resolves through.
REGISTRIES = {
    r.section: r for r in (GENERATORS, RETRIEVERS, REWRITERS, RERANKERS, EXPANDERS, COMPRESSORS)
}
