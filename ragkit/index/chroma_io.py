"""chroma's side of the store: connecting, and chunks and filters in its terms (scalar
metadata, `where` clauses)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ragkit.errors import StoreError
from ragkit.index.sources import LONE_SURROGATE
from ragkit.types import Chunk

# Chunk fields kept beside the user's metadata in each chroma record; "_json" lists the keys
# whose values were JSON-encoded because chroma only stores scalars.
DOC_ID, START, END, JSON_KEYS = "_doc_id", "_start", "_end", "_json"
RESERVED = (DOC_ID, START, END, JSON_KEYS)
_SCALARS = (str, int, float, bool)


def chunk_to_record(chunk: Chunk) -> dict[str, Any]:
    """Flatten a chunk's metadata to chroma scalars, JSON-encoding the rest so it round-trips."""
    meta: dict[str, Any] = {DOC_ID: chunk.doc_id, START: chunk.start, END: chunk.end}
    encoded: list[str] = []
    for key, value in chunk.metadata.items():
        key = str(key)
        if key in RESERVED:
            raise StoreError(f"chunk {chunk.id!r}: metadata key {key!r} is reserved by the store")
        if isinstance(value, str) and LONE_SURROGATE.search(value):
            raise StoreError(
                f"chunk {chunk.id!r}: metadata {key!r} is not valid Unicode (a lone surrogate); "
                "a file path is stored with ragkit.index.sources.stored_source"
            )
        if isinstance(value, _SCALARS) and not (isinstance(value, float) and value != value):
            meta[key] = value
        else:
            meta[key] = json.dumps(value, ensure_ascii=False, default=str)
            encoded.append(key)
    if encoded:
        meta[JSON_KEYS] = json.dumps(encoded)
    return meta


def record_to_chunk(chunk_id: str, text: str | None, meta: Mapping[str, Any]) -> Chunk:
    encoded = set(json.loads(meta[JSON_KEYS])) if JSON_KEYS in meta else set()
    user = {
        key: json.loads(value) if key in encoded else value
        for key, value in meta.items()
        if key not in RESERVED
    }
    return Chunk(
        id=chunk_id,
        doc_id=str(meta[DOC_ID]),
        text=text or "",
        start=int(meta[START]),
        end=int(meta[END]),
        metadata=user,
    )


def to_where(filters: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Turn `{key: value, key2: [a, b]}` into chroma's where syntax; operator dicts pass through.

    Chroma needs `$and` for more than one key and `$in` for a list of allowed values.
    """
    if not filters:
        return None
    clauses: list[dict[str, Any]] = []
    for key, value in filters.items():
        if key.startswith("$"):
            clauses.append({key: value})
        elif key == "doc_id":
            clauses.append({DOC_ID: _condition(value)})
        else:
            clauses.append({key: _condition(value)})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _condition(value: Any) -> Any:
    if isinstance(value, list | tuple | set | frozenset):
        return {"$in": list(value)}
    return value


def connect(location: str | Path, create: bool = False) -> Any:
    """A chroma client for a server URL or a local folder; the folder is made only when
    `create` is set, so reading never leaves an empty store behind."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    text = str(location)
    if text.startswith(("http://", "https://")):
        url = urlparse(text)
        if not url.hostname:
            raise StoreError(f"chroma server URL {text!r} has no host")
        port = url.port or (443 if url.scheme == "https" else 8000)
        try:
            client = chromadb.HttpClient(
                host=url.hostname, port=port, ssl=url.scheme == "https", settings=settings
            )
            client.heartbeat()
        except Exception as exc:  # chroma raises httpx, ValueError or its own errors
            raise StoreError(f"chroma server {text} cannot be reached: {exc}") from exc
        return client
    path = Path(location).expanduser()
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=settings)
    except Exception as exc:
        raise StoreError(f"chroma store at {str(path)!r} cannot be opened: {exc}") from exc
