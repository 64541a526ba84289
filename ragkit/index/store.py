"""The vector store boundary: chunks and their vectors in a chromadb collection.

`ChromaStore` owns the chunk collection and its `__docs` manifest, and keeps the two in step (a
document is complete only after its last chunk is written; deleting a document removes its
chunks first, then its entry). The manifest's entries are read and written by
`ragkit.index.manifest`; record conversion and connections are in `ragkit.index.chroma_io`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ragkit.errors import StoreError
from ragkit.index.chroma_io import (
    DOC_ID,
    END,
    START,
    chunk_to_record,
    connect,
    record_to_chunk,
    to_where,
)
from ragkit.index.manifest import (
    MANIFEST_SUFFIX,
    DocumentManifest,
    DocumentRecord,
    manifest_name,
)
from ragkit.index.manifest import batches as _batches
from ragkit.index.short_results import complete_short_results
from ragkit.types import Chunk, Retrieved

__all__ = ["ChromaStore", "CollectionInfo", "DocumentRecord", "chunk_to_record", "to_where"]

MODEL_KEY = "ragkit:embedding_model"
DIMENSION_KEY = "ragkit:dimension"


class CollectionInfo(NamedTuple):
    name: str
    # The field shadows tuple.count (callers read `.count` as the number of chunks); a public
    # name, so it stays, and mypy's objection to the shadowing is silenced.
    count: int  # type: ignore[assignment]
    metadata: dict[str, Any]


class ChromaStore:
    """Chunks and vectors in one chroma collection, plus a `<collection>__docs` manifest.

    The store never lets chroma embed: vectors always come from ragkit's embedder, and the
    collection records which model made them so two models never share one index. The
    manifest holds one record per document with a `complete` flag, which is what makes
    ingestion resumable and lets unchanged files be skipped without reading their chunks.

    Nothing is created on disk until the first write: opening a store to query it must not
    leave an empty index behind, and a query against a missing or empty collection is an
    error that says to ingest first rather than an answer made up without sources.
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
        self._remote = self.location.startswith(("http://", "https://"))
        self._lock = threading.RLock()
        self._client: Any = None
        self._collection: Any = None
        self._manifest: DocumentManifest | None = None
        if self._remote or self._on_disk():
            self._client = connect(location)
            self._find_existing()

    # -- connection ---------------------------------------------------------------------------

    def _on_disk(self) -> bool:
        """Whether a local chroma database is already there (chroma keeps one sqlite file)."""
        return (Path(self.location).expanduser() / "chroma.sqlite3").is_file()

    def _find_existing(self) -> bool:
        """Open the collection if it exists, without creating anything; True when it does."""
        if self._collection is not None:
            return True
        with self._lock:
            if self._collection is not None:
                return True
            if self._client is None:
                if not self._on_disk():
                    return False
                self._client = connect(self.location)
            try:
                self._collection = self._client.get_collection(
                    self.collection_name, embedding_function=None
                )
            except Exception:  # chroma raises NotFoundError, ValueError or InvalidCollection
                return False
            self._check_model()
            return True

    def _existing_manifest(self) -> DocumentManifest | None:
        with self._lock:
            if self._manifest is None and self._find_existing():
                with contextlib.suppress(Exception):  # a collection written without one
                    handle = self._client.get_collection(
                        manifest_name(self.collection_name), embedding_function=None
                    )
                    self._manifest = DocumentManifest(handle, self.max_batch_size)
            return self._manifest

    def _create(self) -> DocumentManifest:
        """Create the store, the collection and its manifest: only writes come here."""
        with self._lock:
            if self._collection is not None and self._manifest is not None:
                return self._manifest
            if self._client is None:
                self._client = connect(self.location, create=True)
            if self._collection is None:
                self._collection = self._open(self.collection_name)
                self._check_model()
            if self._manifest is None:
                self._manifest = self._open_manifest()
            return self._manifest

    def _missing(self) -> StoreError:
        return StoreError(
            f"no index at {self.location} (collection {self.collection_name!r}): "
            f"run `ragkit ingest <files> --store {self.location}` first"
        )

    def require_chunks(self) -> None:
        """Raise a StoreError naming the store unless its collection holds chunks; retrievers
        call this when they find nothing, so an empty index is never taken for no matches."""
        if not self._find_existing():
            raise self._missing()
        if self.count() == 0:
            raise StoreError(
                f"the index at {self.location} (collection {self.collection_name!r}) is empty: "
                f"run `ragkit ingest <files> --store {self.location}` first"
            )

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

    def _open_manifest(self) -> DocumentManifest:
        handle = self._open(manifest_name(self.collection_name), space="l2")
        return DocumentManifest(handle, self.max_batch_size)

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
        if not self._find_existing():
            return {}
        return dict(self._collection.metadata or {})

    @property
    def max_batch_size(self) -> int:
        if self._client is None:
            self._create()
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
        self._create()
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
        if not self._find_existing():
            raise self._missing()
        clause = to_where(where)
        answered = self._collection.query(
            query_embeddings=array,
            n_results=k,
            where=clause,
            include=["documents", "metadatas", "distances"],
        )
        result = complete_short_results(self._collection, array, k, clause, answered)
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
        if any(not hits for hits in out):
            self.require_chunks()  # nothing found: an empty index is an error, not "no match"
        return out

    def get_chunks(
        self, ids: Sequence[str] | None = None, where: Mapping[str, Any] | None = None
    ) -> list[Chunk]:
        """Chunks by id and/or filter, in pages the server accepts (BM25 builds from this)."""
        if (ids is not None and len(ids) == 0) or not self._find_existing():
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
        if not self._find_existing():
            return ids
        page, offset = self.max_batch_size, 0
        while True:
            got = self._collection.get(where=to_where(where), limit=page, offset=offset, include=[])
            ids.extend(got["ids"])
            if len(got["ids"]) < page:
                return ids
            offset += page

    def chunk_spans(self, doc_id: str) -> dict[str, tuple[int, int]]:
        """Chunk id -> (start, end) of one document's stored chunks, read without their text
        or vectors, so a resumed ingestion can skip chunks it already wrote."""
        spans: dict[str, tuple[int, int]] = {}
        if not self._find_existing():
            return spans
        page, offset = self.max_batch_size, 0
        while True:
            got = self._collection.get(
                where={DOC_ID: doc_id}, limit=page, offset=offset, include=["metadatas"]
            )
            for cid, meta in zip(got["ids"], got["metadatas"], strict=True):
                spans[cid] = (int(meta[START]), int(meta[END]))
            if len(got["ids"]) < page:
                return spans
            offset += page

    def count(self) -> int:
        if not self._find_existing():
            return 0
        return int(self._collection.count())

    # -- documents ----------------------------------------------------------------------------

    def mark_documents(self, records: Iterable[DocumentRecord]) -> None:
        """Write manifest entries; ingestion writes `complete=True` only after the chunks."""
        rows = list(records)
        if not rows:
            return
        self._create().mark(rows)

    def documents(self) -> dict[str, DocumentRecord]:
        """Every manifest entry by document id, complete or not."""
        manifest = self._existing_manifest()
        return {} if manifest is None else manifest.records()

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
        manifest = self._existing_manifest()
        if not ids or manifest is None:
            return removed
        for part in _batches(len(ids), 500):
            where = {DOC_ID: {"$in": ids[part]}}
            stale = self.chunk_ids(where)
            for piece in _batches(len(stale), self.max_batch_size):
                self._collection.delete(ids=stale[piece])
            removed += len(stale)
            manifest.delete(ids[part])
        return removed

    def delete_source(self, source: str) -> int:
        """Remove every document recorded for a source, and any chunk that names it; `source`
        is as stored (`ragkit.index.sources.stored_source` of a path)."""
        doc_ids = {r.doc_id for r in self.documents().values() if r.source == source}
        removed = self.delete_documents(doc_ids)
        stray = self.chunk_ids({"source": source})
        if not stray:
            return removed
        for part in _batches(len(stray), self.max_batch_size):
            self._collection.delete(ids=stray[part])
        return removed + len(stray)

    # -- collections --------------------------------------------------------------------------

    def collections(self) -> list[CollectionInfo]:
        """Chunk collections in this store with their sizes (manifests are left out)."""
        out: list[CollectionInfo] = []
        if self._client is None:
            self._find_existing()  # connects when there is a store on disk
        if self._client is None:
            return out
        for col in self._client.list_collections():
            name = col if isinstance(col, str) else col.name
            if name.endswith(MANIFEST_SUFFIX):
                continue
            handle = self._client.get_collection(name, embedding_function=None)
            out.append(CollectionInfo(name, int(handle.count()), dict(handle.metadata or {})))
        return sorted(out)

    def reset(self) -> None:
        """Drop this collection and its manifest, then recreate both empty."""
        self._create()
        for name in (self.collection_name, manifest_name(self.collection_name)):
            with contextlib.suppress(Exception):  # absent already
                self._client.delete_collection(name)
        self._collection = self._open(self.collection_name)
        self._manifest = self._open_manifest()

    def __repr__(self) -> str:
        return f"ChromaStore({self.location!r}, collection={self.collection_name!r})"
