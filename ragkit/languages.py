"""What languages an index holds, and a warning when its embedder cannot read them.

The default embedder (all-MiniLM-L6-v2) was trained on English only: over a Chinese index its
nearest neighbours are close to random, and nothing in the results says so. The store counts
the chunks it is given by language (a few characters decide: CJK or not) and keeps the tally
in the collection's metadata; a dense query against a mostly Chinese collection with an
English-only embedder then warns once per collection, naming a pipeline that reads Chinese.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from ragkit.text import cjk_ratio

LANGUAGES_KEY = "ragkit:languages"
# A chunk counts as Chinese when this share of its non-space characters is CJK; news in Chinese
# mixes in digits and Latin names, so well below one half still reads as Chinese text.
CJK_SHARE = 0.2
# Warn when more than this share of a collection's chunks is Chinese.
MOSTLY = 0.5
# Embedders known to read English only (lower case, with and without the organisation).
ENGLISH_ONLY = frozenset(
    {
        "sentence-transformers/all-minilm-l6-v2",
        "all-minilm-l6-v2",
        "sentence-transformers/all-minilm-l12-v2",
        "all-minilm-l12-v2",
        "sentence-transformers/all-mpnet-base-v2",
        "all-mpnet-base-v2",
        "wordllama",
    }
)
# What to use instead: lexical retrieval reads any language, and multilingual e5 embeds Chinese.
CHINESE_PIPELINE = "best"
MULTILINGUAL_EMBEDDER = "intfloat/multilingual-e5-small"

_warned: set[tuple[str, str, str]] = set()
_lock = threading.Lock()


class LanguageMismatchWarning(UserWarning):
    """An index is searched by an embedder that does not read most of its text."""


def language_of(text: str) -> str:
    """'zh' for text that is mostly CJK, 'en' for other text with letters, '' for neither."""
    if cjk_ratio(text) >= CJK_SHARE:
        return "zh"
    return "en" if any(ch.isalpha() for ch in text) else ""


def count_languages(texts: Iterable[str]) -> Counter[str]:
    return Counter(lang for lang in map(language_of, texts) if lang)


def read_mix(metadata: Mapping[str, Any] | None) -> dict[str, int]:
    """Chunk counts by language from a collection's metadata ({} when none were recorded)."""
    raw = (metadata or {}).get(LANGUAGES_KEY)
    if not raw:
        return {}
    try:
        mix = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return {str(k): int(v) for k, v in mix.items()} if isinstance(mix, dict) else {}


def with_languages(metadata: Mapping[str, Any] | None, texts: Iterable[str]) -> dict[str, Any]:
    """The collection metadata with these chunks added to its language tally (chroma keeps only
    scalars, so the tally is one JSON string)."""
    meta = dict(metadata or {})
    mix = Counter(read_mix(meta))
    mix.update(count_languages(texts))
    meta[LANGUAGES_KEY] = json.dumps(dict(sorted(mix.items())), sort_keys=True)
    return meta


def describe(mix: Mapping[str, int]) -> str:
    """'zh 87%, en 13%' (largest first), or 'not recorded'."""
    total = sum(mix.values())
    if not total:
        return "not recorded"
    parts = sorted(mix.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{lang} {100 * n / total:.0f}%" for lang, n in parts)


def english_only(model: str) -> bool:
    name = model.lower().rstrip("/")
    return name in ENGLISH_ONLY or name.rsplit("/", 1)[-1] in ENGLISH_ONLY


def check_embedder(store: Any, model: str) -> str | None:
    """Warn (once per store, collection and model) when an English-only embedder searches a
    mostly Chinese collection; returns the message, or None when all is well."""
    if not english_only(model):
        return None
    mix = read_mix(getattr(store, "metadata", None))
    total = sum(mix.values())
    if not total or mix.get("zh", 0) / total <= MOSTLY:
        return None
    key = (str(getattr(store, "location", "")), str(getattr(store, "collection_name", "")), model)
    with _lock:
        if key in _warned:
            return None
        _warned.add(key)
    message = (
        f"collection {key[1]!r} is {describe(mix)} but embedder {model!r} reads English only, "
        f"so dense search there is close to random; use pipeline {CHINESE_PIPELINE!r} (BM25 over "
        f"words and character bigrams), or embedder model {MULTILINGUAL_EMBEDDER!r}"
    )
    warnings.warn(message, LanguageMismatchWarning, stacklevel=3)
    return message
