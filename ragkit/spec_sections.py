"""The base classes of spec sections: a frozen, hashable section, and a pluggable one whose `kind`
(or `mode`) resolves through a registry and whose kind's typed options are checked when the spec
loads (see `ragkit.registry`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ragkit.registry import IMPORT_PATH, Registry


class SettingError(ValueError):
    """A rule between settings, broken: raised from a section's validator with the key (inside
    that section) it is about, so the message names that key rather than the whole section."""

    def __init__(self, key: str, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.value = value


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def __hash__(self) -> int:
        # Sections key the shared-model caches; `options` may hold lists and dicts.
        return hash((type(self), self.model_dump_json()))


class _Pluggable(_Spec):
    """A section whose `kind` resolves through a registry: a registered name, or a user's class
    as `module:Class` whose constructor takes `options` (checked when the spec is loaded).

    A registered kind's typed options are checked here: the section keys it reads must hold
    what it needs (`generator.base_url` for `openai`), and a key that only this kind takes (a
    kind registered from outside the package) is a key of the section for that kind alone."""

    model_config = ConfigDict(extra="allow", frozen=True)
    _registry: ClassVar[Registry]
    _kind_field: ClassVar[str] = "kind"
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind", "mode", check_fields=False)
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        return cls._registry.check(kind)

    @model_validator(mode="after")
    def _options_need_a_class(self) -> _Pluggable:
        kind = getattr(self, self._kind_field)
        if self.options and not IMPORT_PATH.match(kind):
            raise ValueError(
                f"options are for a class named by import path; {kind!r} takes its settings as "
                "keys of this section"
            )
        return self

    @model_validator(mode="after")
    def _kind_takes_its_keys(self) -> _Pluggable:
        kind = getattr(self, self._kind_field)
        entry = self._registry.entry(kind)
        model = None if entry is None else entry.options
        taken = set() if model is None else set(model.model_fields)
        for key, value in (self.model_extra or {}).items():
            if key not in taken:
                raise SettingError(key, value, "unknown key")
        if model is not None:
            try:
                checked = model.model_validate(self._given(model))
            except ValidationError as exc:
                first = exc.errors()[0]
                key = ".".join(str(p) for p in first["loc"])
                if first["type"] == "missing":
                    hint = model.model_fields[key].description
                    where = f"{self._registry.section}.{self._kind_field}"
                    reason = f"required when {where} is {kind!r}{f' ({hint})' if hint else ''}"
                    raise SettingError(key, None, reason) from None
                reason = first["msg"].removeprefix("Value error, ")
                raise SettingError(key, first.get("input"), reason) from None
            # A kind's own key set to its default is dropped, so it makes the same spec as the
            # key left unset (one tune variant, one cache entry) and does not stand in the way
            # of switching to another kind.
            extra = self.__pydantic_extra__ or {}
            for key in list(extra):
                if getattr(checked, key) == model.model_fields[key].get_default(
                    call_default_factory=True
                ):
                    del extra[key]
        return self

    def _given(self, model: type[BaseModel]) -> dict[str, Any]:
        """The values of the keys `model` reads: the section's own (unset ones left out, so a
        kind's defaults apply) and those only this kind takes."""
        own = {k: getattr(self, k) for k in model.model_fields if k in type(self).model_fields}
        return {**{k: v for k, v in own.items() if v is not None}, **(self.model_extra or {})}

    @property
    def settings(self) -> BaseModel | None:
        """The registered kind's typed options, as its maker reads them (None for a kind
        without an options model, or a user's class, which takes `options`)."""
        entry = self._registry.entry(getattr(self, self._kind_field))
        if entry is None or entry.options is None:
            return None
        return entry.options.model_validate(self._given(entry.options))

    @property
    def plugin(self) -> str | None:
        """The import path of a user's class, or None for a registered kind."""
        kind = getattr(self, self._kind_field)
        return kind if IMPORT_PATH.match(kind) else None


def _kind_keys_dropped(section: _Spec, change: Mapping[str, Any]) -> dict[str, Any]:
    """A section's settings for an override: when the change names another kind, the keys only
    the old kind took go (its `options` too, which belong to a class)."""
    raw = section.model_dump()
    if not isinstance(section, _Pluggable) or change.get(section._kind_field) in (
        None,
        getattr(section, section._kind_field),
    ):
        return raw
    own = set(section.model_extra or {}) | {"options"}
    return {k: v for k, v in raw.items() if k not in own}


def section_kind(section: _Spec) -> str:
    """The registered kind or import path a pluggable section names (its `kind` or `mode`)."""
    return str(getattr(section, section._kind_field))  # type: ignore[attr-defined]
