"""Embedding backends: each loads offline from a cached export, agrees with torch fp32, and
is exported once, atomically, outside the packaged model folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ragkit.embedding import (
    BACKEND_ENV,
    Embedder,
    OnnxEncoder,
    backend_candidates,
    export_dir,
    onnx_available,
)
from ragkit.errors import ConfigError
from ragkit.models import (
    DEFAULT_EMBEDDING_MODEL,
    READY_FILE,
    build_once,
    cache_dir,
    read_manifest,
    resolve_embedding_model,
)

SENTENCES = [
    "The cat sleeps on a warm mat by the fire.",
    "Central banks raised interest rates again this quarter.",
    "A kitten naps on a rug near the fireplace.",
    "Short.",
    "国家统计局今日发布数据，第三季度国内生产总值同比增长。",
    "暴雨导致河水上涨，沿岸村庄的居民已被紧急转移。",
    "该公司宣布将投资五十亿元建设新的电池工厂。",
]
ONNX_BACKENDS = ["onnx", "onnx-int8"]

needs_onnx = pytest.mark.skipif(not onnx_available(), reason="onnx/onnxruntime not installed")


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return Embedder(backend="torch").embed_documents(SENTENCES)


@pytest.fixture(scope="module")
def source() -> str:
    return resolve_embedding_model(DEFAULT_EMBEDDING_MODEL)


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@needs_onnx
@pytest.mark.parametrize("backend", ONNX_BACKENDS)
def test_backend_matches_torch_with_unit_vectors(backend, torch_vectors):
    embedder = Embedder(backend=backend)
    vectors = embedder.embed_documents(SENTENCES)
    assert embedder.resolved_backend == backend
    assert vectors.shape == (len(SENTENCES), embedder.dimension) == (len(SENTENCES), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cosine = np.sum(vectors * torch_vectors, axis=1)
    assert cosine.min() >= 0.99, cosine


@needs_onnx
@pytest.mark.parametrize("backend", ONNX_BACKENDS)
def test_vector_does_not_depend_on_batch(backend):
    """Per-text runs keep int8's per-call activation scales from mixing texts."""
    embedder = Embedder(backend=backend)
    together = embedder.embed_documents(SENTENCES)
    alone = np.stack([embedder.embed_documents([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert embedder.embed_documents([]).shape == (0, 384)


@needs_onnx
def test_tokenizer_and_limits_are_the_models_own():
    embedder = Embedder(backend="onnx-int8")
    ids = embedder.tokenizer("hello world")["input_ids"]
    assert ids[0] == embedder.tokenizer.cls_token_id and len(ids) == 4
    assert embedder.max_seq_length == 256
    long_text = "word " * 2000  # truncated like sentence-transformers, not rejected
    assert embedder.embed_documents([long_text]).shape == (1, 384)


@needs_onnx
def test_encoder_speaks_the_sentence_transformers_encode_call():
    """Code that times `model.encode` directly (benchmarks) runs the same backend."""
    embedder = Embedder(backend="onnx-int8")
    model = embedder.warm_up()
    assert isinstance(model, OnnxEncoder)
    raw = model.encode(SENTENCES, batch_size=2, normalize_embeddings=True)
    np.testing.assert_allclose(raw, embedder.embed_documents(SENTENCES), atol=1e-5)


@pytest.mark.slow
@needs_onnx
@pytest.mark.parametrize("backend", ONNX_BACKENDS)
def test_export_is_cached_outside_the_model_folder(backend, source, tmp_path, monkeypatch):
    # A cache of its own: another test process may be exporting into the shared one right now.
    monkeypatch.setenv("RAGKIT_CACHE", str(tmp_path / "cache"))
    before = _files(Path(source))
    fp32 = export_dir(source, "onnx")
    fp32_stamp = fp32.stat().st_mtime_ns
    first = export_dir(source, backend)
    manifest = read_manifest(first)
    model_file = first / manifest["file"]
    stamp = model_file.stat().st_mtime_ns
    again = export_dir(source, backend)
    assert again == first
    assert read_manifest(again)["export_id"] == manifest["export_id"]  # not re-exported
    assert model_file.stat().st_mtime_ns == stamp
    assert first.is_relative_to(cache_dir())
    assert _files(Path(source)) == before
    assert not list(first.parent.glob("*.partial"))
    assert manifest["validation"]["passed"], manifest["validation"]
    assert manifest["source"] == source and manifest["backend"] == backend
    # Nothing is written into the shared fp32 export while deriving from it (a file made and
    # removed there changes the folder's mtime): another process may be reading it.
    assert fp32.stat().st_mtime_ns == fp32_stamp
    assert sorted(p.name for p in first.iterdir() if p.name.startswith("fp32-")) == []


def test_auto_keeps_torch_and_onnx_is_opt_in(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert Embedder(backend="auto").resolved_backend == "torch"
    assert backend_candidates("auto", "cpu", "bfloat16") == ["torch"]
    assert backend_candidates("auto", "cuda", "auto") == ["torch"]
    assert backend_candidates("onnx", "cpu", "auto") == ["onnx"]


@needs_onnx
def test_onnx_export_passes_its_validation():
    embedder = Embedder(backend="onnx")
    assert embedder.resolved_backend == "onnx"
    assert embedder.warm_up().manifest["validation"]["min_cosine"] >= 0.999


def test_unknown_backend_is_named_in_the_error(monkeypatch):
    with pytest.raises(ValueError, match="'onnx-fp16'.*auto, torch, onnx, onnx-int8"):
        Embedder(backend="onnx-fp16")
    monkeypatch.setenv(BACKEND_ENV, "tensorrt")
    with pytest.raises(ValueError, match="'tensorrt'"):
        Embedder()


@needs_onnx
def test_environment_sets_what_auto_tries_first(monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "onnx")
    # float32 explicitly: `auto` precision is bf16 on CPUs with native bf16, where ONNX never fits
    embedder = Embedder(precision="float32")
    assert embedder.backend == "auto" and embedder.resolved_backend == "onnx"
    # a preference, not an order: bf16 and GPUs still get torch instead of an error
    assert backend_candidates("auto", "cpu", "bfloat16") == ["torch"]
    assert backend_candidates("auto", "cuda", "auto") == ["torch"]
    assert backend_candidates("torch", "cpu", "auto") == ["torch"]
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert Embedder().resolved_backend == "torch"


@needs_onnx
def test_onnx_refuses_bf16_and_gpu():
    with pytest.raises(ConfigError, match="bfloat16"):
        Embedder(backend="onnx", precision="bfloat16").embed_documents(["x"])
    with pytest.raises(ConfigError, match="cpu only"):
        Embedder(backend="onnx-int8", device="cuda").embed_documents(["x"])


@needs_onnx
def test_missing_model_is_a_config_error():
    with pytest.raises(ConfigError, match="/no/such/model"):
        Embedder(model="/no/such/model", backend="onnx").embed_documents(["x"])


def test_build_once_leaves_nothing_behind_a_failed_build(tmp_path):
    target = tmp_path / "artefact"

    def fail(folder: Path) -> dict:
        (folder / "half-written").write_text("x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        build_once(target, fail)
    assert list(tmp_path.iterdir()) == []

    calls = []

    def build(folder: Path) -> dict:
        calls.append(folder)
        (folder / "data.txt").write_text("ok")
        return {"built": True}

    assert build_once(target, build) == target
    assert build_once(target, build) == target
    assert len(calls) == 1
    assert (target / "data.txt").read_text() == "ok"
    assert json.loads((target / READY_FILE).read_text()) == {"built": True}
