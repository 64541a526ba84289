"""ONNX backends for the embedder: export a sentence-transformers model once (transformer,
pooling and normalisation in one graph), optionally quantise its weight matrices to int8, check
the export against torch fp32 on fixed probe texts, and run it with onnxruntime.

Why not sentence-transformers' own `backend="onnx"`: it loads through optimum-onnx, whose
release pins transformers < 4.58 and imports helpers that transformers 5 (required by
sentence-transformers 6) removed, so installing it would downgrade transformers under
sentence-transformers. ragkit therefore does the two steps optimum wraps itself:
`torch.onnx.export` (the TorchScript exporter, which needs no onnxscript) and
`onnxruntime.quantization.quantize_dynamic`. Exports go once, offline, into ragkit's cache
folder (never into the model folder, which may be read-only), keyed by model and backend.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
import uuid
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.embedding.cpu import cpu_int8_isa, cpu_threads
from ragkit.errors import ConfigError
from ragkit.models import build_once, derived_model_dir, read_manifest

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


def onnx_available() -> bool:
    """Exporting needs `onnx`, running needs `onnxruntime`; both are imported lazily."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


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
        self._pool = ThreadPoolExecutor(cpu_threads(), thread_name_prefix="ragkit-onnx")

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
    getter = getattr(model, "get_embedding_dimension", None) or (
        model.get_sentence_embedding_dimension
    )
    max_len, dim = model.max_seq_length, getter()
    if max_len is None or dim is None:
        raise ConfigError(f"{source}: ONNX export needs a fixed maximum length and dimension")
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
    manifest = _manifest(source, "onnx", "model.onnx", names, max_len, dim)
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
    # onnxruntime writes a shape-inferred copy beside the model it quantises and deletes it
    # after; from the shared fp32 folder, two processes exporting at once would read and delete
    # each other's copy, so each quantises from a copy of its own in its build folder.
    source, target = folder / f"fp32-{base['file']}", folder / manifest["file"]
    shutil.copy2(fp32 / base["file"], source)
    reference = np.load(folder / "probe_reference.npy")
    try:
        chosen, risky = _weight_matmuls(onnx.load(str(source), load_external_data=False))
        for node in reversed(risky):
            _quantize(source, target, [*chosen, node])
            cos = _probe_cosines(folder, manifest, reference)
            if cos.mean() < GREEDY_MIN_MEAN_COSINE or cos.min() < GREEDY_MIN_COSINE:
                break
            chosen.append(node)
        _quantize(source, target, chosen)
    finally:
        source.unlink(missing_ok=True)
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
