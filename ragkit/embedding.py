"""Text embedding: one sentence-transformers model turning passages and queries into vectors.

The model runs on one of three backends:

- "torch": sentence-transformers as loaded (fp32, or bf16 where the CPU runs it natively);
- "onnx": the whole model (transformer, pooling, normalisation) exported once to ONNX and run
  by onnxruntime, one text per call on every core; same vectors as torch fp32 (cosine 1.0000);
- "onnx-int8": that export with its weight matrices dynamically quantised to int8, a further
  ~1.25x on AVX2 at a cosine of ~0.993 to fp32 (min ~0.985 on short Chinese snippets).

"auto" (the default) is torch; "onnx" and "onnx-int8" are explicit choices, e.g. for bulk
ingestion, or process-wide preferences for "auto" through RAGKIT_EMBEDDING_BACKEND (which then
still falls back to torch where ONNX cannot serve: GPUs, bf16, a model that does not export).
Every export is checked against torch fp32 on fixed English and Chinese probe texts when it is
built, and one that drifts is refused. int8's per-text drift, though small, exceeds what
ragkit's precision checks allow (0.99 cosine for every text).

Why not sentence-transformers' own `backend="onnx"`: it loads through optimum-onnx, whose
release pins transformers < 4.58 and imports helpers that transformers 5 (required by
sentence-transformers 6) removed, so installing it would downgrade transformers under
sentence-transformers. ragkit therefore does the two steps optimum wraps itself:
`torch.onnx.export` (the TorchScript exporter, which needs no onnxscript) and
`onnxruntime.quantization.quantize_dynamic`. Exports go once, offline, into ragkit's cache
folder (never into the model folder, which may be read-only), keyed by model and backend.

Vectors from the backends of one model are interchangeable for search (int8 keeps mean cosine
>= 0.99 to fp32 and the same answer recall on the bundled questions), so a store records the
model name only: a collection built with one backend may be queried with another.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import threading
import time
import uuid
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ragkit.errors import ConfigError
from ragkit.models import (
    DEFAULT_EMBEDDING_MODEL,
    build_once,
    derived_model_dir,
    read_manifest,
    resolve_embedding_model,
)

logger = logging.getLogger(__name__)

Precision = Literal["auto", "float32", "bfloat16"]
Backend = Literal["auto", "torch", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx", "onnx-int8")
BACKEND_ENV = "RAGKIT_EMBEDDING_BACKEND"

EXPORT_FORMAT = 2  # bump when the export recipe changes, so old exports are rebuilt
INT8_MIN_MEAN_COSINE = 0.99
INT8_MIN_COSINE = 0.98
# Stricter bars while choosing what to quantise leave a margin for texts unlike the probes.
GREEDY_MIN_MEAN_COSINE = 0.993
GREEDY_MIN_COSINE = 0.985
FP32_MIN_COSINE = 0.999

# Probe texts every export is checked on: short and long English, and Chinese news (the default
# corpus) at chunk length, where the English-only default model is least stable.
PROBES = (
    "The cat sleeps on a warm mat by the fire.",
    "Central banks raised interest rates again this quarter.",
    "Short.",
    "The ferry to the island leaves the harbour at seven every morning, and in winter storms "
    "the crossing is often cancelled, so islanders keep a week of supplies at home. The "
    "council has asked the ferry company to add a second boat, but the company says the "
    "harbour is too shallow at low tide for a larger vessel and dredging would cost millions.",
    "Researchers trained a small language model on public domain books and measured how well "
    "it answered questions about history, chemistry and law. It matched a model ten times its "
    "size on history, lagged on chemistry, and refused most legal questions outright, which "
    "the authors attribute to the small share of legal text in old books.",
    "国家统计局今日发布数据，第三季度国内生产总值同比增长百分之四点九。",
    "暴雨导致河水上涨，沿岸多个村庄的居民已被紧急转移到安全地带。",
    "记者从市交通运输局获悉，为缓解早晚高峰拥堵，本市将于下月起新开三条公交快线，连接城东新区、"
    "高铁站和市中心商业区。快线全程设站不超过八个，高峰时段发车间隔缩短至五分钟。交通部门表示，"
    "新线路开通后，城东新区居民到市中心的通勤时间有望从一小时缩短到四十分钟左右，同时将根据客流"
    "情况动态调整班次。市民可通过公交应用程序查询实时到站信息。",
    "该公司昨日发布公告称，将在未来三年投资五十亿元建设新的动力电池工厂，项目选址位于西部工业园区，"
    "预计建成后年产能达到二十吉瓦时，可带动就业约三千人。公司董事长在发布会上表示，新工厂将采用"
    "自主研发的生产工艺，单位能耗比现有产线降低百分之十五。业内分析人士认为，此举有助于公司应对"
    "日益激烈的市场竞争，但也提醒投资者关注原材料价格波动带来的风险。",
    "北京时间昨晚，中国女排以三比一战胜对手，晋级世界杯决赛。",
)


@cache
def _cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (x86 "flags", ARM "Features"); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _cpu_has_fast_bf16() -> bool:
    """bf16 pays off on CPUs with AMX or AVX512-BF16; elsewhere it is emulated and slower."""
    return bool(_cpu_flags() & {"amx_bf16", "avx512_bf16"})


def cpu_int8_isa() -> str | None:
    """The int8 instruction set onnxruntime's kernels will use here, None if it has none.

    Part of the int8 export's cache key: how much quantisation moves vectors depends on the
    kernels (AVX2 without VNNI saturates 16-bit sums), so each ISA is validated on its own.
    """
    flags = _cpu_flags()
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "vnni"
    if "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    if "asimd" in flags:
        return "arm64"
    return None


def resolve_precision(precision: Precision, device: str) -> Literal["float32", "bfloat16"]:
    """Pick the dtype for `auto`: bf16 where the hardware runs it natively, fp32 otherwise."""
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device == "cpu" and _cpu_has_fast_bf16():
        return "bfloat16"
    return "float32"


def onnx_available() -> bool:
    """Exporting needs `onnx`, running needs `onnxruntime`; both are imported lazily."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def backend_candidates(backend: str, device: str, precision: Precision) -> list[str]:
    """Backends to try, best first: one for an explicit choice, a fallback chain for `auto`.

    `auto` is torch for now: the ONNX backends are opt-in until they have run as the default
    through the whole test suite without a difference from torch (one ingest test picked a
    different top hit once with `onnx`, unexplained so far). RAGKIT_EMBEDDING_BACKEND puts an
    ONNX backend first for `auto` where it can serve (CPU, fp32), with torch behind it.
    """
    if backend != "auto":
        return [backend]
    preferred = preferred_backend()
    onnx_fits = device == "cpu" and resolve_precision(precision, device) == "float32"
    if preferred in ("onnx", "onnx-int8") and onnx_fits and onnx_available():
        return [preferred, "torch"]
    return ["torch"]


def preferred_backend() -> str:
    """What `auto` should try first, from RAGKIT_EMBEDDING_BACKEND ("auto" when unset)."""
    value = os.environ.get(BACKEND_ENV, "").strip() or "auto"
    if value not in BACKENDS:
        raise ValueError(
            f"{BACKEND_ENV}={value!r} is not an embedding backend; "
            f"choose one of {', '.join(BACKENDS)}"
        )
    return value


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def _cpu_threads() -> int:
    """Cores to use: OMP_NUM_THREADS when set (as torch honours it, and as process pools such
    as Ray set it per worker), else the CPUs this process may run on."""
    with contextlib.suppress(ValueError):
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class OnnxEncoder:
    """An exported model run by onnxruntime, shaped like the parts of `SentenceTransformer`
    that ragkit uses (`encode`, `tokenizer`, `max_seq_length`), so callers need not care.

    Each text runs as its own call, one single-threaded call per core at a time. On small CPUs
    that beats batching with intra-op threads by about half (no padding, no thread hand-offs
    inside each matrix product), and it keeps a text's vector independent of its batch
    neighbours: int8 activations are scaled per call, so batching would leak one text's range
    into another's vector. Tokenisation uses the model's own tokenizer, saved beside the
    export, with the truncation sentence-transformers applies.
    """

    def __init__(self, folder: Path, manifest: dict[str, Any] | None = None) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        manifest = manifest if manifest is not None else read_manifest(folder)
        self.folder = folder
        self.manifest = manifest
        self.backend: str = manifest["backend"]
        self.max_seq_length = int(manifest["max_seq_length"])
        self.dimension = int(manifest["dimension"])
        self.input_names: list[str] = list(manifest["inputs"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # the quantised graph logs harmless shape notes
        self.session = ort.InferenceSession(
            str(folder / manifest["file"]), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self._pool = ThreadPoolExecutor(_cpu_threads(), thread_name_prefix="ragkit-onnx")

    def get_embedding_dimension(self) -> int:
        return self.dimension

    def close(self) -> None:
        """Stop the worker threads now rather than when the encoder is collected."""
        self._pool.shutdown(wait=False)

    def encode(
        self,
        sentences: Sequence[str],
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        **_: Any,
    ) -> np.ndarray:
        """float32 vectors in input order; `batch_size` is accepted for compatibility only."""
        texts = list(sentences)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        encoded = self.tokenizer(texts, truncation="longest_first", max_length=self.max_seq_length)
        columns = [encoded[name] for name in self.input_names]
        rows = self._pool.map(self._run, zip(*columns, strict=True))
        out = np.stack(list(rows)).astype(np.float32, copy=False)
        if normalize_embeddings:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _run(self, ids: tuple[list[int], ...]) -> np.ndarray:
        feed = {
            name: np.asarray(column, dtype=np.int64)[None, :]
            for name, column in zip(self.input_names, ids, strict=True)
        }
        return self.session.run(None, feed)[0][0]


# -- export ------------------------------------------------------------------------------------


def _export_fp32(source: str, folder: Path) -> dict[str, Any]:
    """Export the full sentence-transformers forward (transformer, pooling, normalisation) to
    `folder/model.onnx` with dynamic batch and sequence axes, and check it against torch."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(
        source,
        device="cpu",
        local_files_only=True,
        model_kwargs={"attn_implementation": "eager"},  # SDPA does not trace to plain ops
    )
    model.eval()
    features = model.preprocess(["an example sentence to trace", "short"])
    names = [k for k, v in features.items() if isinstance(v, torch.Tensor)]
    constants = {k: v for k, v in features.items() if k not in names}
    graph = _sentence_graph(model, names, constants).eval()
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer and exporter deprecation chatter
        torch.onnx.export(
            graph,
            tuple(features[n] for n in names),
            str(folder / "model.onnx"),
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
        reference = model.encode(list(PROBES), convert_to_numpy=True)
    model.tokenizer.save_pretrained(str(folder))
    getter = getattr(model, "get_embedding_dimension", None) or (
        model.get_sentence_embedding_dimension
    )
    manifest = _manifest(source, "onnx", "model.onnx", names, model.max_seq_length, getter())
    np.save(folder / "probe_reference.npy", reference.astype(np.float32))
    return _validated(manifest, folder, reference, FP32_MIN_COSINE, FP32_MIN_COSINE)


def _manifest(
    source: str, backend: str, file: str, inputs: list[str], max_len: int, dim: int
) -> dict[str, Any]:
    import onnxruntime

    return {
        "format": EXPORT_FORMAT,
        "export_id": uuid.uuid4().hex,  # tells a re-export from a cache hit without timing
        "created": time.time(),
        "source": source,
        "backend": backend,
        "file": file,
        "inputs": inputs,
        "max_seq_length": int(max_len),
        "dimension": int(dim),
        "onnxruntime": onnxruntime.__version__,
    }


def _validated(
    manifest: dict[str, Any],
    folder: Path,
    reference: np.ndarray,
    min_mean: float,
    min_each: float,
) -> dict[str, Any]:
    """Encode the probes with the new export and record how close it stays to `reference`."""
    cos = _probe_cosines(folder, manifest, reference)
    manifest["validation"] = {
        "mean_cosine": round(float(cos.mean()), 5),
        "min_cosine": round(float(cos.min()), 5),
        "passed": bool(cos.mean() >= min_mean and cos.min() >= min_each),
    }
    return manifest


def _sentence_graph(model: Any, names: list[str], constants: dict[str, Any]) -> Any:
    """A module taking the tokenizer's tensors positionally and returning the sentence vector,
    which is the form `torch.onnx.export` traces; non-tensor features are fixed constants."""
    import torch

    class SentenceGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            features = {**constants, **dict(zip(names, tensors, strict=True))}
            return self.model(features)["sentence_embedding"]

    return SentenceGraph()


def _weight_matmuls(model: Any) -> tuple[list[str], list[str]]:
    """MatMul nodes that multiply by a weight matrix, split into (safe, risky) for int8.

    Activation-by-activation products (attention scores) are left in fp32: both sides would
    need quantising per batch. Risky are projections reading a wider input than they write
    (the feed-forward down-projection): its input is a GELU output whose outliers a
    per-tensor int8 scale holds poorly, so each is quantised only if the probes allow it.
    """
    weights = {init.name: tuple(init.dims) for init in model.graph.initializer}
    safe: list[str] = []
    risky: list[str] = []
    for node in model.graph.node:
        shape = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if shape is None or len(shape) != 2:
            continue
        (risky if shape[0] > shape[1] else safe).append(node.name)
    return safe, risky


def _quantize(source: Path, target: Path, nodes: list[str]) -> None:
    """Dynamic int8: weights per output channel in a 7-bit range, so AVX2's 16-bit sums cannot
    saturate; activations quantised at run time, per call (one text)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    quiet = _FromPackage("onnxruntime")  # it logs advice on the root logger
    root.addFilter(quiet)
    try:
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            nodes_to_quantize=nodes,
        )
    finally:
        root.removeFilter(quiet)


class _FromPackage(logging.Filter):
    """Drops records logged from inside one package's files."""

    def __init__(self, package: str) -> None:
        super().__init__()
        self.marker = f"{os.sep}{package}{os.sep}"

    def filter(self, record: logging.LogRecord) -> bool:
        return self.marker not in record.pathname


def _probe_cosines(folder: Path, manifest: dict[str, Any], reference: np.ndarray) -> np.ndarray:
    encoder = OnnxEncoder(folder, manifest)
    try:
        return _cosines(encoder.encode(list(PROBES)), reference)
    finally:
        encoder.close()


def _export_int8(fp32: Path, folder: Path) -> dict[str, Any]:
    """Quantise the fp32 export's weight matrices to int8, adding the risky projections from
    the last layer backwards (early layers' errors compound through the rest) while the probes
    stay close to fp32, then validate the result."""
    import shutil

    import onnx

    base = read_manifest(fp32)
    for item in fp32.iterdir():
        if item.suffix != ".onnx" and item.is_file() and not item.name.startswith("ragkit-"):
            shutil.copy2(item, folder / item.name)
    manifest = {
        **_manifest(
            base["source"],
            "onnx-int8",
            "model_qint8.onnx",
            base["inputs"],
            base["max_seq_length"],
            base["dimension"],
        ),
        "isa": cpu_int8_isa(),
    }
    source, target = fp32 / base["file"], folder / manifest["file"]
    reference = np.load(folder / "probe_reference.npy")
    chosen, risky = _weight_matmuls(onnx.load(str(source), load_external_data=False))
    for node in reversed(risky):
        _quantize(source, target, [*chosen, node])
        cos = _probe_cosines(folder, manifest, reference)
        if cos.mean() < GREEDY_MIN_MEAN_COSINE or cos.min() < GREEDY_MIN_COSINE:
            break
        chosen.append(node)
    _quantize(source, target, chosen)
    manifest["quantized_matmuls"] = len(chosen)
    return _validated(manifest, folder, reference, INT8_MIN_MEAN_COSINE, INT8_MIN_COSINE)


def export_dir(source: str, backend: str) -> Path:
    """The cached export of `source` for an ONNX backend, built on first use."""
    fp32 = build_once(
        derived_model_dir(source, f"onnx-v{EXPORT_FORMAT}"),
        lambda tmp: _export_fp32(source, tmp),
    )
    if backend == "onnx":
        return fp32
    isa = cpu_int8_isa() or "generic"
    return build_once(
        derived_model_dir(source, f"onnx-int8-{isa}-v{EXPORT_FORMAT}"),
        lambda tmp: _export_int8(fp32, tmp),
    )


def load_onnx(source: str, backend: str) -> OnnxEncoder:
    if not onnx_available():
        raise ConfigError(
            f"embedding backend {backend!r} needs the onnx and onnxruntime packages: "
            "pip install onnx onnxruntime"
        )
    return OnnxEncoder(export_dir(source, backend))


# -- the embedder ------------------------------------------------------------------------------


class Embedder(RunnableSerializable[str, list[float]]):
    """Embeds passages for the store and queries for retrieval with one loaded model.

    As a Runnable it maps a query string to its vector (that is what a retrieval chain needs);
    `batch` encodes all inputs in one model call. Passages go through `embed_documents`.
    `query_prefix` / `passage_prefix` serve e5-style models that expect "query: " / "passage: ".
    `backend` picks how the model runs (see the module docstring); what `auto` tries first can
    be set process-wide with RAGKIT_EMBEDDING_BACKEND, e.g. to compare backends in benchmarks
    that build their own embedders.
    """

    model: str = DEFAULT_EMBEDDING_MODEL
    device: str = "cpu"
    precision: Precision = "auto"
    backend: Backend = "auto"
    batch_size: int = Field(64, gt=0)
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _model: Any = PrivateAttr(default=None)
    _backend: str | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @field_validator("backend", mode="before")
    @classmethod
    def _known_backend(cls, value: Any) -> Any:
        if value not in BACKENDS:
            raise ValueError(
                f"embedding backend {value!r} is unknown; choose one of {', '.join(BACKENDS)}"
            )
        return value

    @field_validator("model")
    @classmethod
    def _non_empty_model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model must name a sentence-transformers model or folder, got ''")
        return value

    @model_validator(mode="after")
    def _known_preference(self) -> Embedder:
        """A misspelt RAGKIT_EMBEDDING_BACKEND fails here, naming itself, not at first use."""
        if self.backend == "auto":
            preferred_backend()
        return self

    @model_validator(mode="after")
    def _default_name(self) -> Embedder:
        """The Runnable's name (shown in traces) defaults to the model name."""
        if self.name is None:
            self.name = self.model
        return self

    @property
    def model_name(self) -> str:
        """The model name as given (not the resolved path), so stores record a portable name.

        The backend is deliberately not part of it: all backends of a model share one vector
        space (int8 is validated to stay within 0.99 cosine of fp32), so a collection stays
        usable when the backend changes.
        """
        return self.model

    @property
    def dtype(self) -> Literal["float32", "bfloat16"]:
        return resolve_precision(self.precision, self.device)

    @property
    def resolved_backend(self) -> str:
        """The backend actually running the model (loads it)."""
        self._load()
        return self._backend or "torch"

    def _load(self) -> Any:
        """Load the model once, thread-safely: ingestion threads may ask for it concurrently."""
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                path = resolve_embedding_model(self.model)
                self._model, self._backend = self._load_first(path)
        return self._model

    def _load_first(self, path: str) -> tuple[Any, str]:
        """The first candidate backend that loads (and, for `auto`, passed validation)."""
        candidates = backend_candidates(self.backend, self.device, self.precision)
        for backend in candidates:
            if backend == "torch":
                return self._load_torch(path), "torch"
            explicit = self.backend != "auto"
            self._check_onnx_request(backend, explicit)
            try:
                encoder = load_onnx(path, backend)
            except ConfigError:
                raise
            except Exception as exc:  # export can fail on models the tracer cannot follow
                if explicit:
                    raise ConfigError(
                        f"embedding model {self.model!r} cannot run on backend {backend!r}: {exc}"
                    ) from exc
                logger.warning("embedding backend %s unavailable for %s: %s", backend, path, exc)
                continue
            check = encoder.manifest.get("validation", {})
            if check.get("passed") or explicit:
                if not check.get("passed"):
                    logger.warning("backend %s drifts from fp32 here: %s", backend, check)
                return encoder, backend
            logger.info("skipping backend %s for %s: %s", backend, path, check)
        raise ConfigError(f"no embedding backend could load {self.model!r}")  # pragma: no cover

    def _check_onnx_request(self, backend: str, explicit: bool) -> None:
        if not explicit:
            return
        if self.device != "cpu":
            raise ConfigError(f"embedding backend {backend!r} runs on cpu only, not {self.device}")
        if self.precision == "bfloat16":
            raise ConfigError(f"embedding backend {backend!r} has no bfloat16 mode; use torch")

    def _load_torch(self, path: str) -> Any:
        import torch
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(path, device=self.device)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"embedding model {self.model!r} (resolved to {path!r}) cannot be loaded: {exc}"
            ) from exc
        model.eval()
        if self.dtype == "bfloat16":
            model = model.to(torch.bfloat16)
        return model

    @property
    def dimension(self) -> int:
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None)
        if getter is None:  # sentence-transformers before 5
            getter = model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer, so chunk windows are counted in the model's own tokens."""
        return self._load().tokenizer

    @property
    def max_seq_length(self) -> int:
        return int(self._load().max_seq_length)

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        """Encode in length order to cut padding, then restore the caller's order."""
        if isinstance(texts, str):
            raise TypeError("expected a sequence of strings, got one str")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self._load()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        ordered = [prefix + texts[i] for i in order]
        if isinstance(model, OnnxEncoder):
            vectors = model.encode(
                ordered, batch_size=self.batch_size, normalize_embeddings=self.normalize
            )
        else:
            vectors = self._encode_torch(model, ordered)
        out = np.empty_like(vectors)
        out[order] = vectors
        return out

    def _encode_torch(self, model: Any, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            encoded = model.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_tensor=True,
                normalize_embeddings=self.normalize,
                show_progress_bar=False,
            )
        return encoded.float().cpu().numpy()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Passage vectors, float32, shape (n, dimension)."""
        return self._encode(texts, self.passage_prefix)

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self._encode(queries, self.query_prefix)

    def embed_query(self, query: str) -> np.ndarray:
        return self.embed_queries([query])[0]

    def invoke(
        self, input: str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[float]:
        return self._call_with_config(lambda q: self.embed_query(q).tolist(), input, config)

    def batch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[list[float]]:
        if not inputs:
            return []

        def run(queries: list[str]) -> list[list[float]]:
            return self.embed_queries(queries).tolist()

        return self._batch_with_config(run, inputs, config, return_exceptions=return_exceptions)
