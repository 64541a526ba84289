"""Search spaces for `ragkit tune`: a YAML file naming dotted spec keys and the values to try.

    base: naive                      # optional; `--pipeline` wins
    space:
      retriever.kind: [bm25, hybrid]
      retriever.lexical: [words, words+bigrams]
      chunker.chunk_tokens: [128, 256]
      rerank: [null, {kind: embedder}]

Every combination is validated as a whole spec up front (import paths included), before any
index is built: a value that works in no combination (a typo, a class that does not import) is
refused with one line naming the file, the key, the value and the reason, all such values at
once; a combination that breaks a rule between settings (overlap as long as the chunk) is
skipped and listed, one line each.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ragkit.errors import ConfigError
from ragkit.registry import REGISTRIES
from ragkit.spec import PipelineSpec, describe, plugin_problem, read_yaml

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


@dataclass(frozen=True)
class Invalid:
    """A combination of values the spec's rules refuse together, and the reason."""

    overrides: tuple[tuple[str, Any], ...]
    reason: str

    def line(self, path: str) -> str:
        return f"{path}: {label(self.overrides)}: {self.reason}"


@dataclass(frozen=True)
class Checked:
    """A space checked against a base spec before any work: the distinct valid variants
    besides the base (as picks of one value per axis) and the combinations skipped as invalid.
    `draw` makes the variants to run."""

    space: Space
    base: PipelineSpec
    valid: list[tuple[int, ...]]
    invalid: list[Invalid]

    @property
    def size(self) -> int:
        """Distinct variants, the base included."""
        return len(self.valid) + 1

    def draw(self, budget: int | None = None, seed: int = 0) -> list[Variant]:
        """The base first, then every valid variant, or `budget - 1` of them drawn with `seed`."""
        if budget is not None and budget < 1:
            raise ValueError(f"--budget must be >= 1, got {budget}")
        chosen = self.valid
        if budget is not None and len(chosen) > budget - 1:
            drawn = random.Random(seed).sample(range(len(chosen)), budget - 1)
            chosen = [chosen[i] for i in sorted(drawn)]
        raw = self.base.model_dump()
        out = [Variant("base", (), self.base)]
        ids = {out[0].id}
        for picks in chosen:
            overrides = _overrides(self.space, picks)
            spec, _ = _spec_for(raw, overrides)
            assert spec is not None
            variant = Variant(label(overrides), overrides, spec)
            if variant.id not in ids:  # the same settings reached by two routes
                ids.add(variant.id)
                out.append(variant)
        return out


def check(space: Space, base: PipelineSpec) -> Checked:
    """Validate every combination of the space as a whole spec, import paths included.

    A value no valid combination holds (a typo, a class that does not import, a setting out of
    range) is a mistake in the space: all such values are refused together, one line each. A
    combination whose values are each fine but break a rule together (overlap as long as the
    chunk) is skipped and listed, so a grid need not be pruned by hand. Combinations giving
    the same spec are one variant.
    """
    keys = [key for key, _ in space.axes]
    unknown = [_unknown_key(key, space.path) for key in keys]
    if any(unknown):
        raise ConfigError("\n".join(u for u in unknown if u))
    raw = base.model_dump()
    works: set[tuple[int, int]] = set()  # (axis, value) pairs some valid combination holds
    failed: set[tuple[int, int]] = set()
    invalid: list[Invalid] = []
    valid: list[tuple[int, ...]] = []
    seen = {_identity(base)}
    for picks in itertools.product(*(range(len(values)) for _, values in space.axes)):
        overrides = _overrides(space, picks)
        spec, reason = _spec_for(raw, overrides)
        pairs = list(enumerate(picks))
        if spec is None:
            invalid.append(Invalid(overrides, reason))
            failed.update(pairs)
            continue
        works.update(pairs)
        identity = _identity(spec)
        if identity not in seen:
            seen.add(identity)
            valid.append(picks)
    refused = [
        f"{space.path}: space.{keys[axis]}: value {_show_value(space.axes[axis][1][i])}: "
        f"{_trim(_why(space, raw, works, axis, i), keys[axis])}"
        for axis, i in sorted(failed - works)
    ]
    if refused:
        raise ConfigError("\n".join(refused))
    return Checked(space, base, valid, invalid)


def variants(
    space: Space, base: PipelineSpec, *, budget: int | None = None, seed: int = 0
) -> list[Variant]:
    """The base pipeline first, then every valid combination (or `budget - 1` of them, drawn
    with `seed`); see `check`."""
    if budget is not None and budget < 1:
        raise ValueError(f"--budget must be >= 1, got {budget}")
    return check(space, base).draw(budget, seed)


def _identity(spec: PipelineSpec) -> str:
    """What `spec_digest` hashes, serialized by pydantic: a cheaper key for telling apart the
    many combinations of a large space."""
    return spec.model_dump_json(exclude={"name", "description", "store"})


def _why(space: Space, raw: dict[str, Any], works: set[tuple[int, int]], axis: int, i: int) -> str:
    """Why a value fails in every combination, told from the combination that pairs it with
    values that work elsewhere, so the reason is about this value and not another bad one."""
    picks = [
        i if a == axis else next((j for j in range(len(vs)) if (a, j) in works), 0)
        for a, (_, vs) in enumerate(space.axes)
    ]
    _, reason = _spec_for(raw, _overrides(space, picks))
    return reason


def _overrides(space: Space, picks: Sequence[int]) -> tuple[tuple[str, Any], ...]:
    return tuple((key, values[i]) for (key, values), i in zip(space.axes, picks, strict=True))


def _unknown_key(key: str, path: str) -> str | None:
    model: type[BaseModel] | None = PipelineSpec
    registry = None
    for part in key.split("."):
        fields = model.model_fields if model is not None else {}
        # A pluggable section also takes the keys its registered kinds add.
        if part not in fields and (registry is None or part not in registry.option_keys()):
            return f"{path}: space.{key}: unknown spec key {part!r}"
        registry = REGISTRIES.get(part) if model is PipelineSpec else None
        model = _model_class(fields[part].annotation) if part in fields else None
    return None


def _spec_for(
    raw: dict[str, Any], overrides: Sequence[tuple[str, Any]]
) -> tuple[PipelineSpec | None, str]:
    """The base's settings with `overrides` set, validated at once as one spec (so the order
    of keys never matters), or None and the reason (`key: reason (got value)`)."""
    body = dict(raw)
    for key, value in overrides:
        *path, last = key.split(".")
        node = body
        for part in path:  # copied on the way down: the base and the space's values stay as is
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}  # None: switched on
            node = node[part]
        node[last] = value
    try:
        spec = PipelineSpec.model_validate(body)
    except ValidationError as exc:
        return None, describe(exc)
    problem = plugin_problem(spec)
    return (None, problem) if problem is not None else (spec, "")


def _trim(reason: str, key: str) -> str:
    """A reason about `key` itself without the key and value the line already names."""
    head = f"{key}: "
    if not reason.startswith(head):
        return reason
    return re.sub(r" \(got .*\)$", "", reason.removeprefix(head))


def _show_value(value: Any) -> str:
    return repr(value) if not isinstance(value, Mapping) else _show(value)


def label(overrides: Sequence[tuple[str, Any]]) -> str:
    """A short readable name: `retriever.kind=bm25 chunker.chunk_tokens=128`."""
    return " ".join(f"{k}={_show(v)}" for k, v in overrides) or "base"


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return "none" if value is None else str(value)


def _unique(values: list[Any]) -> list[str]:
    return sorted({json.dumps(v, sort_keys=True, default=str) for v in values})
