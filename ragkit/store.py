"""The vector store boundary: chunks, their vectors and a per-document manifest in chromadb."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

import numpy as np

from ragkit.errors import StoreError
from ragkit.types import Chunk, Retrieved

MODEL_KEY = "ragkit:embedding_model"
DIMENSION_KEY = "ragkit:dimension"
MANIFEST_SUFFIX = "__docs"

# Chunk fields kept beside the user's metadata in each chroma record; "_json" lists the keys
# whose values were JSON-encoded because chroma only stores scalars.
_DOC_ID, _START, _END, _JSON = "_doc_id", "_start", "_end", "_json"
_RESERVED = (_DOC_ID, _START, _END, _JSON)
_SCALARS = (str, int, float, bool)


class CollectionInfo(NamedTuple):
    name: str
    count: int
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """One document's manifest entry; `complete` is set only once all its chunks are stored."""

    doc_id: str
    source: str
    content_hash: str
    chunks: int
    complete: bool


def chunk_to_record(chunk: Chunk) -> dict[str, Any]:
    """Flatten a chunk's metadata to chroma scalars, JSON-encoding the rest so it round-trips."""
    meta: dict[str, Any] = {_DOC_ID: chunk.doc_id, _START: chunk.start, _END: chunk.end}
    encoded: list[str] = []
    for key, value in chunk.metadata.items():
        key = str(key)
        if key in _RESERVED:
            raise StoreError(f"chunk {chunk.id!r}: metadata key {key!r} is reserved by the store")
        if isinstance(value, _SCALARS) and not (isinstance(value, float) and value != value):
            meta[key] = value
        else:
            meta[key] = json.dumps(value, ensure_ascii=False, default=str)
            encoded.append(key)
    if encoded:
        meta[_JSON] = json.dumps(encoded)
    return meta


def record_to_chunk(chunk_id: str, text: str | None, meta: Mapping[str, Any]) -> Chunk:
    encoded = set(json.loads(meta[_JSON])) if _JSON in meta else set()
    user = {
        key: json.loads(value) if key in encoded else value
        for key, value in meta.items()
        if key not in _RESERVED
    }
    return Chunk(
        id=chunk_id,
        doc_id=str(meta[_DOC_ID]),
        text=text or "",
        start=int(meta[_START]),
        end=int(meta[_END]),
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
            clauses.append({_DOC_ID: _condition(value)})
        else:
            clauses.append({key: _condition(value)})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _condition(value: Any) -> Any:
    if isinstance(value, list | tuple | set | frozenset):
        return {"$in": list(value)}
    return value


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class ChromaStore:
    """Chunks and vectors in one chroma collection, plus a `<collection>__docs` manifest.

    The store never lets chroma embed: vectors always come from ragkit's embedder, and the
    collection records which model made them so two models never share one index. The
    manifest holds one record per document with a `complete` flag, which is what makes
    ingestion resumable and lets unchanged files be skipped without reading their chunks.
    """

    def __init__(
        self,
        location: str | Path = ".ragkit/chroma",
        collection: str = "ragkit",
        embedding_model: str | None = None,
    ) -> None:
        if not collection or collection.endswith(MANIFEST_SUFFIX):
            raise StoreError(
                f"collection name {collection!r} is invalid: it must be non-empty and must not "
                f"end with {MANIFEST_SUFFIX!r}"
            )
        self.location = str(location)
        self.collection_name = collection
        self.embedding_model = embedding_model
        self._client = self._connect(location)
        self._collection = self._open(collection)
        self._manifest = self._open(collection + MANIFEST_SUFFIX, space="l2")
        self._check_model()

    # -- connection ---------------------------------------------------------------------------

    @staticmethod
    def _connect(location: str | Path) -> Any:
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
            path.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(path), settings=settings)
        except Exception as exc:
            raise StoreError(f"chroma store at {str(path)!r} cannot be opened: {exc}") from exc

    def _open(self, name: str, space: str = "cosine") -> Any:
        metadata = {MODEL_KEY: self.embedding_model} if self.embedding_model else None
        try:
            return self._client.get_or_create_collection(
                name,
                embedding_function=None,
                configuration={"hnsw": {"space": space}},
                metadata=metadata,
            )
        except Exception as exc:
            raise StoreError(
                f"collection {name!r} in {self.location} cannot be opened: {exc}"
            ) from exc

    def _check_model(self) -> None:
        """Refuse a collection made by another model; adopt a collection that names none."""
        meta = dict(self._collection.metadata or {})
        recorded = meta.get(MODEL_KEY)
        if self.embedding_model is None:
            self.embedding_model = recorded
            return
        if recorded is None:
            meta[MODEL_KEY] = self.embedding_model
            self._collection.modify(metadata=meta)
        elif recorded != self.embedding_model:
            raise StoreError(
                f"collection {self.collection_name!r} in {self.location} holds vectors of "
                f"embedding model {recorded!r}; it cannot take vectors of "
                f"{self.embedding_model!r} (use another collection or delete this one)"
            )

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._collection.metadata or {})

    @property
    def max_batch_size(self) -> int:
        return int(self._client.get_max_batch_size())

    # -- chunks -------------------------------------------------------------------------------

    def upsert(
        self, chunks: Sequence[Chunk], vectors: np.ndarray | Sequence[Sequence[float]]
    ) -> None:
        """Insert or overwrite chunks by id: re-writing the same chunk twice leaves one copy."""
        if len(chunks) == 0:
            return
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != len(chunks):
            raise StoreError(
                f"upsert into {self.collection_name!r}: got {len(chunks)} chunks but vectors of "
                f"shape {array.shape}"
            )
        self._check_dimension(array.shape[1])
        ids = [c.id for c in chunks]
        texts = [c.text for c in chunks]
        metas = [chunk_to_record(c) for c in chunks]
        for part in _batches(len(chunks), self.max_batch_size):
            self._collection.upsert(
                ids=ids[part], embeddings=array[part], documents=texts[part], metadatas=metas[part]
            )
        from ragkit.languages import with_languages

        self._collection.modify(metadata=with_languages(self.metadata, texts))

    def _check_dimension(self, dimension: int) -> None:
        meta = self.metadata
        recorded = meta.get(DIMENSION_KEY)
        if recorded is None:
            meta[DIMENSION_KEY] = int(dimension)
            self._collection.modify(metadata=meta)
        elif int(recorded) != dimension:
            raise StoreError(
                f"collection {self.collection_name!r} holds {recorded}-dimensional vectors of "
                f"{meta.get(MODEL_KEY)!r}; got {dimension}-dimensional vectors"
            )

    def query(
        self,
        vectors: np.ndarray | Sequence[float] | Sequence[Sequence[float]],
        k: int = 5,
        where: Mapping[str, Any] | None = None,
    ) -> list[list[Retrieved]]:
        """Nearest chunks per query vector; score is cosine similarity, rank starts at 1."""
        if k <= 0:
            raise ValueError(f"k must be > 0, but got {k}")
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim == 1:
            array = array[None, :]
        if array.shape[0] == 0:
            return []
        result = self._collection.query(
            query_embeddings=array,
            n_results=k,
            where=to_where(where),
            include=["documents", "metadatas", "distances"],
        )
        out: list[list[Retrieved]] = []
        for ids, docs, metas, dists in zip(
            result["ids"],
            result["documents"],
            result["metadatas"],
            result["distances"],
            strict=True,
        ):
            out.append(
                [
                    Retrieved(
                        chunk=record_to_chunk(cid, text, meta),
                        score=1.0 - float(dist),
                        rank=rank,
                        source="dense",
                    )
                    for rank, (cid, text, meta, dist) in enumerate(
                        zip(ids, docs, metas, dists, strict=True), start=1
                    )
                ]
            )
        return out

    def get_chunks(
        self, ids: Sequence[str] | None = None, where: Mapping[str, Any] | None = None
    ) -> list[Chunk]:
        """Chunks by id and/or filter, in pages the server accepts (BM25 builds from this)."""
        if ids is not None and len(ids) == 0:
            return []
        chunks: list[Chunk] = []
        page = self.max_batch_size
        if ids is not None:
            for part in _batches(len(ids), page):
                got = self._collection.get(
                    ids=list(ids[part]), where=to_where(where), include=["documents", "metadatas"]
                )
                chunks.extend(self._to_chunks(got))
            order = {cid: i for i, cid in enumerate(ids)}
            chunks.sort(key=lambda c: order[c.id])
            return chunks
        offset = 0
        while True:
            got = self._collection.get(
                where=to_where(where),
                limit=page,
                offset=offset,
                include=["documents", "metadatas"],
            )
            chunks.extend(self._to_chunks(got))
            if len(got["ids"]) < page:
                return chunks
            offset += page

    @staticmethod
    def _to_chunks(got: Mapping[str, Any]) -> Iterator[Chunk]:
        for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
            yield record_to_chunk(cid, text, meta)

    def chunk_ids(self, where: Mapping[str, Any] | None = None) -> list[str]:
        ids: list[str] = []
        page, offset = self.max_batch_size, 0
        while True:
            got = self._collection.get(where=to_where(where), limit=page, offset=offset, include=[])
            ids.extend(got["ids"])
            if len(got["ids"]) < page:
                return ids
            offset += page

    def count(self) -> int:
        return int(self._collection.count())

    # -- documents ----------------------------------------------------------------------------

    def mark_documents(self, records: Iterable[DocumentRecord]) -> None:
        """Write manifest entries; ingestion writes `complete=True` only after the chunks."""
        rows = list(records)
        for part in _batches(len(rows), self.max_batch_size):
            chunk = rows[part]
            self._manifest.upsert(
                ids=[r.doc_id for r in chunk],
                embeddings=np.ones((len(chunk), 1), dtype=np.float32),
                metadatas=[
                    {
                        "source": r.source,
                        "content_hash": r.content_hash,
                        "chunks": r.chunks,
                        "complete": r.complete,
                    }
                    for r in chunk
                ],
            )

    def documents(self) -> dict[str, DocumentRecord]:
        """Every manifest entry by document id, complete or not."""
        out: dict[str, DocumentRecord] = {}
        page, offset = self.max_batch_size, 0
        while True:
            got = self._manifest.get(limit=page, offset=offset, include=["metadatas"])
            for doc_id, meta in zip(got["ids"], got["metadatas"], strict=True):
                out[doc_id] = DocumentRecord(
                    doc_id=doc_id,
                    source=str(meta["source"]),
                    content_hash=str(meta.get("content_hash", "")),
                    chunks=int(meta.get("chunks", 0)),
                    complete=bool(meta.get("complete", False)),
                )
            if len(got["ids"]) < page:
                return out
            offset += page

    def sources(self) -> dict[str, set[str]]:
        """Source path -> ids of its completely stored documents, for change detection."""
        out: dict[str, set[str]] = {}
        for record in self.documents().values():
            if record.complete:
                out.setdefault(record.source, set()).add(record.doc_id)
        return out

    def delete_documents(self, doc_ids: Iterable[str]) -> int:
        """Remove documents' chunks, then their manifest entries; returns chunks removed."""
        ids = sorted(set(doc_ids))
        removed = 0
        for part in _batches(len(ids), 500):
            where = {_DOC_ID: {"$in": ids[part]}}
            stale = self.chunk_ids(where)
            for piece in _batches(len(stale), self.max_batch_size):
                self._collection.delete(ids=stale[piece])
            removed += len(stale)
            self._manifest.delete(ids=ids[part])
        return removed

    def delete_source(self, source: str) -> int:
        """Remove every document recorded for a source path, and any chunk that names it."""
        doc_ids = {r.doc_id for r in self.documents().values() if r.source == source}
        removed = self.delete_documents(doc_ids)
        stray = self.chunk_ids({"source": source})
        for part in _batches(len(stray), self.max_batch_size):
            self._collection.delete(ids=stray[part])
        return removed + len(stray)

    # -- collections --------------------------------------------------------------------------

    def collections(self) -> list[CollectionInfo]:
        """Chunk collections in this store with their sizes (manifests are left out)."""
        out = []
        for col in self._client.list_collections():
            name = col if isinstance(col, str) else col.name
            if name.endswith(MANIFEST_SUFFIX):
                continue
            handle = self._client.get_collection(name)
            out.append(CollectionInfo(name, int(handle.count()), dict(handle.metadata or {})))
        return sorted(out)

    def reset(self) -> None:
        """Drop this collection and its manifest, then recreate both empty."""
        for name in (self.collection_name, self.collection_name + MANIFEST_SUFFIX):
            with contextlib.suppress(Exception):  # absent already
                self._client.delete_collection(name)
        self._collection = self._open(self.collection_name)
        self._manifest = self._open(self.collection_name + MANIFEST_SUFFIX, space="l2")

    def __repr__(self) -> str:
        return f"ChromaStore({self.location!r}, collection={self.collection_name!r})"
