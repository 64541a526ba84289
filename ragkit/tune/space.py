"""Search spaces for `ragkit tune`: a YAML file naming dotted spec keys and the values to try.

    base: naive                      # optional; `--pipeline` wins
    space:
      retriever.kind: [bm25, hybrid]
      retriever.lexical: [words, words+bigrams]
      chunker.chunk_tokens: [128, 256]
      rerank: [null, {kind: embedder}]

Every value is applied to the base spec and validated up front, so a typo fails as one line
naming the file, the key and the reason before any index is built.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ragkit.errors import ConfigError
from ragkit.spec import PipelineSpec, read_yaml

_TOP_KEYS = {"base", "space"}
# Keys that say where a pipeline runs or what it is called, not how it works.
_NOT_TUNABLE = {"name", "description", "store"}


@dataclass(frozen=True)
class Variant:
    """One point of the space: the base spec with `overrides` applied."""

    label: str
    overrides: tuple[tuple[str, Any], ...]
    spec: PipelineSpec

    @property
    def id(self) -> str:
        return spec_digest(self.spec)


@dataclass(frozen=True)
class Space:
    path: str
    base: str | None
    axes: tuple[tuple[str, tuple[Any, ...]], ...]

    @property
    def size(self) -> int:
        size = 1
        for _, values in self.axes:
            size *= len(values)
        return size


def spec_digest(spec: PipelineSpec) -> str:
    """Identity of what a spec computes: its name, description and store location do not count."""
    body = spec.model_dump(mode="json", exclude={"name", "description", "store"})
    return hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:10]


def _model_class(annotation: Any) -> type[BaseModel] | None:
    """The spec class behind a field annotated `XSpec` or `XSpec | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        for arg in typing.get_args(annotation):
            found = _model_class(arg)
            if found is not None:
                return found
    return None


def override(model: BaseModel, key: str, value: Any) -> BaseModel:
    """`model` with the dotted `key` set to `value`, validated by the spec's own rules.

    A section that is off (`rerank: null`) is switched on with its defaults when one of its
    keys is set. Raises `KeyError` for an unknown key and `ValidationError` for a bad value.
    """
    head, _, rest = key.partition(".")
    fields = type(model).model_fields
    if head not in fields:
        raise KeyError(head)
    if not rest:
        return type(model).model_validate({**model.model_dump(), head: value})
    child = getattr(model, head)
    if child is None:
        cls = _model_class(fields[head].annotation)
        if cls is None:
            raise KeyError(head)
        child = cls()
    if not isinstance(child, BaseModel):
        raise KeyError(rest.partition(".")[0])
    return model.model_copy(update={head: override(child, rest, value)})


def apply(base: PipelineSpec, overrides: Sequence[tuple[str, Any]], origin: str) -> PipelineSpec:
    spec: BaseModel = base
    for key, value in overrides:
        spec = _checked_override(spec, key, value, origin)
    assert isinstance(spec, PipelineSpec)
    return spec


def _checked_override(spec: BaseModel, key: str, value: Any, origin: str) -> BaseModel:
    try:
        return override(spec, key, value)
    except KeyError as exc:
        raise ConfigError(f"{origin}: space.{key}: unknown spec key {exc.args[0]!r}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        detail = f" ({where})" if where and where != key.rpartition(".")[2] else ""
        raise ConfigError(
            f"{origin}: space.{key}: value {value!r}: {first['msg']}{detail}"
        ) from None


def load_space(path: str | Path) -> Space:
    """Read and shape-check a space file; values are checked against a spec in `variants`."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a space file is a mapping with a 'space' key")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key (allowed: base, space)")
    axes = raw.get("space")
    if not isinstance(axes, dict) or not axes:
        raise ConfigError(f"{path}: space: must map spec keys to lists of values")
    base = raw.get("base")
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{path}: base: must be a pipeline name or file, got {base!r}")
    checked = []
    for key, values in axes.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{path}: space: keys are dotted spec keys, got {key!r}")
        if key.split(".")[0] in _NOT_TUNABLE:
            raise ConfigError(f"{path}: space.{key}: not a tunable key (names and stores)")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: space.{key}: must be a non-empty list of values")
        unique = _unique(values)
        if len(unique) != len(values):
            raise ConfigError(f"{path}: space.{key}: a value repeats")
        checked.append((key, tuple(values)))
    return Space(str(path), base, tuple(checked))


def variants(
    space: Space, base: PipelineSpec, *, budget: int | None = None, seed: int = 0
) -> list[Variant]:
    """The base pipeline first, then every combination (or `budget - 1` of them, drawn with
    `seed`); combinations that give the same spec are one variant."""
    if budget is not None and budget < 1:
        raise ValueError(f"--budget must be >= 1, got {budget}")
    for key, values in space.axes:  # every value checked on its own, before any combination
        for value in values:
            apply(base, [(key, value)], space.path)
    keys = [k for k, _ in space.axes]
    combos = list(itertools.product(*(v for _, v in space.axes)))
    if budget is not None and len(combos) > budget - 1:
        combos = random.Random(seed).sample(combos, budget - 1)
    out = [Variant("base", (), base)]
    seen = {spec_digest(base)}
    for combo in combos:
        overrides = tuple(zip(keys, combo, strict=True))
        spec = apply(base, overrides, space.path)
        digest = spec_digest(spec)
        if digest in seen:
            continue
        seen.add(digest)
        out.append(Variant(label(overrides), overrides, spec))
    return out


def label(overrides: Sequence[tuple[str, Any]]) -> str:
    """A short readable name: `retriever.kind=bm25 chunker.chunk_tokens=128`."""
    return " ".join(f"{k}={_show(v)}" for k, v in overrides) or "base"


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return "none" if value is None else str(value)


def _unique(values: list[Any]) -> list[str]:
    return sorted({json.dumps(v, sort_keys=True, default=str) for v in values})
