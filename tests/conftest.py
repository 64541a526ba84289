"""Session fixtures: every real model loads once per test run."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_server_support import free_port, llama_server

from ragkit.eval.crud_rag import default_crud_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO = Path(__file__).resolve().parents[1]
CRUD_DIR = default_crud_dir(REPO)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the llama-server fixture are marked `llama_server`, so `make test` can run them
    after the server is built (modules that start it themselves carry the mark)."""
    for item in items:
        if "llama_server_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.llama_server)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def crud_rag_dir() -> Path:
    if not CRUD_DIR.is_dir():
        pytest.skip(f"{CRUD_DIR} is not present")
    return CRUD_DIR


@pytest.fixture(scope="session")
def bundled_corpus() -> Path:
    return REPO / "evals" / "bundled" / "corpus"


@pytest.fixture(scope="session")
def embedder():
    from ragkit.embedding import Embedder

    return Embedder()


@pytest.fixture(scope="session")
def local_generator():
    from ragkit.generation.local import LocalGenerator

    return LocalGenerator(max_new_tokens=24)


@pytest.fixture(scope="session")
def float32_generator():
    """The packaged model in float32, where a batch decodes exactly as each prompt alone (bf16
    rounds a batched matmul differently from a lone one, so greedy text may part ways)."""
    from ragkit.generation.local import LocalGenerator

    return LocalGenerator(max_new_tokens=24, dtype="float32")


@pytest.fixture(scope="session")
def bundled_index(tmp_path_factory, bundled_corpus, embedder) -> str:
    """The bundled corpus ingested once per test process with the default chunker and embedder,
    which `naive`, `best` and the served test pipelines share. Tests read it; a test that
    writes to an index makes its own."""
    from ragkit import build
    from ragkit.spec import load_spec

    spec = load_spec("naive").with_store(str(tmp_path_factory.mktemp("bundled-index")))
    build.register_embedder(spec.embedder, embedder)
    build.ingestor(spec).ingest([str(bundled_corpus)], progress=False)
    return spec.store.location


@pytest.fixture(scope="session")
def bundled_spec(bundled_index, local_generator):
    """The `naive` spec over the run's bundled index, answered by the real local model.

    The build registry is primed with the test run's embedder (by `bundled_index`) and generator
    so pipelines built from specs share the already loaded models.
    """
    from ragkit import build
    from ragkit.spec import load_spec

    spec = load_spec("naive").with_store(bundled_index)
    # Two passages keep prompts short: tests check behaviour, not answer quality.
    spec = spec.model_copy(update={"retriever": spec.retriever.model_copy(update={"top_k": 2})})
    build.register_generator(spec.generator, local_generator)
    return spec


@pytest.fixture(scope="session")
def scripted_spec(bundled_index):
    """The `naive` spec over the run's bundled index, answered by the scripted generator: real
    retrieval (the embedder `bundled_index` registered), no model generation, so logic tests
    take milliseconds."""
    from ragkit.spec import load_spec

    spec = load_spec("naive").with_store(bundled_index)
    return spec.override(generator={"kind": "scripted"}, retriever={"top_k": 2})


@contextlib.contextmanager
def chroma_server(folder: Path) -> Iterator[str]:
    """A real `chroma run` on a free loopback port, stopped on exit; yields its URL."""
    import httpx

    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    if chroma is None:
        pytest.fail("the chroma CLI is not installed beside this Python")
    port = free_port()
    server = subprocess.Popen(
        [chroma, "run", "--path", str(folder), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, "chroma server exited"
            assert time.monotonic() < deadline, "chroma server did not answer within 60 s"
            time.sleep(0.25)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="session")
def llama_server_url(tmp_path_factory):
    """A real third-party OpenAI-compatible server (llama.cpp's llama-server) on 127.0.0.1,
    started once per test process."""
    with llama_server(tmp_path_factory.mktemp("llama_server"), parallel=2) as url:
        yield url
