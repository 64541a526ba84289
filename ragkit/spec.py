"""Pipeline specs: typed, validated YAML that names every component and its settings, so the same
spec runs embedded on a laptop or against remote services (a chroma server, an OpenAI-compatible
generator) by changing only locations."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ragkit.errors import ConfigError
from ragkit.models import DEFAULT_EMBEDDING_MODEL
from ragkit.registry import (
    COMPRESSORS,
    EXPANDERS,
    GENERATORS,
    REGISTRIES,
    RERANKERS,
    RETRIEVERS,
    REWRITERS,
    import_class,
    options_model,
)
from ragkit.resources import pipelines_dir
from ragkit.spec_sections import SettingError, _kind_keys_dropped, _Pluggable, _Spec
from ragkit.spec_sections import section_kind as section_kind


class StoreSpec(_Spec):
    location: str = ".ragkit/chroma"  # a folder, or http(s)://host:port of a chroma server
    collection: str = "ragkit"

    @field_validator("collection")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not 3 <= len(value) <= 63:
            raise ValueError(f"collection names have 3 to 63 characters, got {value!r}")
        return value


class EmbedderSpec(_Spec):
    model: str = DEFAULT_EMBEDDING_MODEL
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    batch_size: int = Field(64, gt=0)
    query_prefix: str = ""
    passage_prefix: str = ""


class ChunkerSpec(_Spec):
    chunk_tokens: int = Field(256, gt=8, le=8192)
    overlap_tokens: int = Field(32, ge=0)
    respect_sentences: bool = True

    @field_validator("overlap_tokens")
    @classmethod
    def _overlap_inside_a_window(cls, overlap: int, info: ValidationInfo) -> int:
        # Each window starts `overlap_tokens` before the previous one ends; as long as a window
        # or longer, the next window would not move forward.
        size = info.data.get("chunk_tokens")
        if size is not None and overlap >= size:
            raise ValueError(f"must be less than chunker.chunk_tokens ({size})")
        return overlap


class RetrieverSpec(_Pluggable):
    _registry = RETRIEVERS
    kind: str = "dense"
    top_k: int = Field(5, gt=0, le=200)
    candidate_k: int = Field(20, gt=0, le=1000)
    # BM25 index terms: jieba words, or words plus Chinese character bigrams.
    lexical: Literal["words", "words+bigrams"] = "words"


class GeneratorSpec(_Pluggable):
    _registry = GENERATORS
    kind: str = "local"
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    max_new_tokens: int = Field(256, gt=0, le=8192)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    timeout_s: float = Field(120.0, gt=0)
    prefix_cache_mb: int = Field(512, ge=0)
    # Local generator: `prefix` reuses an exact cached prompt prefix; `passages` also reuses
    # each passage's KV wherever it lands (docs/generation-and-kv-reuse.md); `off` neither.
    kv_reuse: Literal["passages", "prefix", "off"] = "prefix"
    passage_cache_mb: int = Field(1024, ge=0)
    passage_recompute_tokens: int = Field(16, ge=0, le=4096)
    passage_recompute_share: float = Field(0.1, ge=0.0, le=1.0)
    passage_misses: Literal["in_prompt", "alone"] = "in_prompt"
    passage_cache_dir: str | None = None  # passage KV computed ahead by `ragkit kv warm`
    # Requests served at once; unset, the backend's own default (a model server takes many).
    max_concurrency: int | None = Field(None, gt=0, le=10_000)

    @model_validator(mode="after")
    def _passages_are_local(self) -> GeneratorSpec:
        if (self.kv_reuse != "prefix" or self.passage_cache_dir) and self.kind != "local":
            raise ValueError(
                "kv_reuse and passage_cache_dir are settings of the local generator; with "
                f"kind {self.kind!r} the model server keeps its own cache "
                "(see docs/generation-and-kv-reuse.md)"
            )
        return self


class PromptSpec(_Spec):
    layout: Literal["prepend", "append"] = "append"
    system: str | None = None
    instruction: str | None = None
    # `stable`: passages in document order rather than rank, so prompts that retrieve the same
    # passages share their token prefix (for a model server's prefix cache).
    passage_order: Literal["rank", "stable"] = "rank"
    passage_template: str | None = None  # {number}, {name}, {source}, {text}

    @field_validator("passage_template")
    @classmethod
    def _template_fields(cls, value: str | None) -> str | None:
        from ragkit.prompting import check_passage_template

        return None if value is None else check_passage_template(value)


class RewriteSpec(_Pluggable):
    # Follow-ups in a conversation: `standalone` has the model resolve them from the history;
    # `history` searches them with the user's earlier questions (no model call).
    _registry = REWRITERS
    _kind_field = "mode"
    mode: str = "rewrite"
    n: int = Field(3, gt=0, le=10)  # rewrites for multi-query
    turns: int = Field(3, gt=0, le=20)  # earlier user questions searched, for `history`
    template: str | None = None
    max_new_tokens: int = Field(96, gt=0, le=1024)


class RerankSpec(_Pluggable):
    _registry = RERANKERS
    kind: str = "embedder"
    model: str | None = None
    candidates: int = Field(20, gt=0, le=500)


class ExpandSpec(_Pluggable):
    """Each final passage widened from the source text its chunk came from (see
    `ragkit.stages.expand`): `window` adds `sentences` sentences on each side; `parent` returns
    the block of `parent_chunks` consecutive chunks when at least `min_hits` of them were hit."""

    _registry = EXPANDERS
    _kind_field = "mode"
    mode: str = "window"
    sentences: int = Field(2, ge=0, le=50)
    parent_chunks: int = Field(4, ge=2, le=64)
    min_hits: int = Field(2, ge=1, le=64)

    @model_validator(mode="after")
    def _hits_fit_a_parent(self) -> ExpandSpec:
        if self.min_hits > self.parent_chunks:
            raise ValueError(
                f"min_hits ({self.min_hits}) cannot exceed parent_chunks ({self.parent_chunks})"
            )
        return self


class CompressSpec(_Pluggable):
    """Each final passage cut to the sentences that bear on the question (see
    `ragkit.stages.compress`), at most `max_tokens` chunker tokens over all passages: `extract`
    ranks sentences by `scorer`; `model` keeps the sentences the generator picks."""

    _registry = COMPRESSORS
    _kind_field = "mode"
    mode: str = "extract"
    max_tokens: int = Field(400, gt=0, le=32768)
    scorer: Literal["bm25", "embedder"] = "bm25"
    max_new_tokens: int = Field(64, gt=0, le=512)  # the copied text, for `model`


class IterateSpec(_Spec):
    rounds: int = Field(2, gt=0, le=10)
    stop_when_stable: bool = True


class PipelineSpec(_Spec):
    name: str = "pipeline"
    description: str = ""
    store: StoreSpec = StoreSpec()
    embedder: EmbedderSpec = EmbedderSpec()
    chunker: ChunkerSpec = ChunkerSpec()
    # Made on use, not at import: a kind is checked against its registry, which loads the
    # built-in kinds, which read these classes.
    retriever: RetrieverSpec = Field(default_factory=RetrieverSpec)
    generator: GeneratorSpec = Field(default_factory=GeneratorSpec)
    prompt: PromptSpec = PromptSpec()
    rewrite: RewriteSpec | None = None
    rerank: RerankSpec | None = None
    expand: ExpandSpec | None = None
    compress: CompressSpec | None = None
    iterate: IterateSpec | None = None

    def with_store(
        self, location: str | None = None, collection: str | None = None
    ) -> PipelineSpec:
        """The same pipeline against another index (a CLI `--store`/`--collection` override),
        validated as YAML is (a collection name chroma refuses fails here, in one line)."""
        given = {k: v for k, v in {"location": location, "collection": collection}.items() if v}
        return self.override(store=given) if given else self

    def override(self, **sections: Any) -> PipelineSpec:
        """This spec with some settings changed, validated exactly as YAML would be.

        `spec.override(generator={"max_new_tokens": 48}, rerank=None)` changes one generator
        setting and drops the reranker; other settings keep their values.
        """
        raw = self.model_dump()
        for name, value in sections.items():
            if isinstance(value, Mapping) and isinstance(raw.get(name), dict):
                raw[name] = {**_kind_keys_dropped(getattr(self, name), value), **value}
            else:
                raw[name] = value
        return parse_spec(raw, origin=f"pipeline {self.name!r}")


def pipeline_names() -> list[str]:
    return sorted(p.stem for p in pipelines_dir().glob("*.yaml"))


def read_yaml(path: Path) -> Any:
    """A YAML file's content; a file that cannot be read or parsed is a ConfigError naming the
    file and, for a syntax error, the line."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{where}: invalid YAML: {reason}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc


def load_spec(name_or_path: str | Path) -> PipelineSpec:
    """Read a spec from a YAML file, or by name from `pipelines/`; errors name file, key, reason."""
    path = Path(name_or_path)
    if not path.is_file():
        candidate = pipelines_dir() / f"{name_or_path}.yaml"
        if not candidate.is_file():
            known = ", ".join(pipeline_names()) or "none"
            raise ConfigError(
                f"unknown pipeline {str(name_or_path)!r}: not a file, and not one of: {known}"
            )
        path = candidate
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a pipeline spec is a mapping of keys, got {type(raw).__name__}")
    raw.setdefault("name", path.stem)
    return parse_spec(raw, origin=str(path))


def parse_spec(raw: dict[str, Any], origin: str = "<spec>") -> PipelineSpec:
    try:
        spec = PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {describe(exc)}") from exc
    problem = plugin_problem(spec)
    if problem is not None:
        raise ConfigError(f"{origin}: {problem}")
    return spec


def describe(exc: ValidationError, prefix: str = "") -> str:
    """`key: reason (got value)` for the first error, and how many more there are."""
    first = exc.errors()[0]
    loc: tuple[Any, ...] = (prefix, *first["loc"]) if prefix else tuple(first["loc"])
    reason = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    shown = not (first["type"] == "extra_forbidden" or isinstance(value, dict))
    rule = first.get("ctx", {}).get("error")
    if isinstance(rule, SettingError):
        loc, value, shown = (*loc, *rule.key.split(".")), rule.value, rule.value is not None
    if first["type"] == "extra_forbidden":
        reason = "unknown key"
    key = ".".join(str(p) for p in loc) or "(top level)"
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{key}: {reason}{f' (got {value!r})' if shown else ''}{more}"


def plugin_problem(spec: PipelineSpec) -> str | None:
    """`key: reason` when a user's class named by import path does not import, is not the kind
    of component its section needs, or does not take its options; None when all are fine."""
    for name in REGISTRIES:
        section = getattr(spec, name)
        if section is None or section.plugin is None:
            continue
        try:
            cls = import_class(section.plugin)
            section._registry.check_class(cls)
        except ValueError as exc:
            return f"{name}.{section._kind_field}: {exc}"
        try:
            _options_model(cls).model_validate(section.options)
        except ValidationError as exc:
            return describe(exc, f"{name}.options")
    return None


_options_model = cache(options_model)  # a tune space checks one class for many variants
