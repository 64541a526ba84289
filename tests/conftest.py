"""Session fixtures: every real model loads once per test run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def crud_rag_dir() -> Path:
    path = SHARED_DATA / "crud-rag"
    if not path.is_dir():
        pytest.skip("../shared/data/crud-rag is not present")
    return path


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
def bundled_spec(tmp_path_factory, bundled_corpus, embedder, local_generator):
    """The `naive` spec pointed at a fresh index of the bundled corpus, built once per run.

    The build registry is primed with the test run's embedder and generator so pipelines built
    from specs share the already loaded models.
    """
    from ragkit import build
    from ragkit.spec import load_spec

    spec = load_spec("naive").with_store(str(tmp_path_factory.mktemp("bundled-index")))
    # Two passages keep prompts short: tests check behaviour, not answer quality.
    spec = spec.model_copy(update={"retriever": spec.retriever.model_copy(update={"top_k": 2})})
    build.register_embedder(spec.embedder, embedder)
    build.register_generator(spec.generator, local_generator)
    build.ingestor(spec).ingest([str(bundled_corpus)], progress=False)
    return spec
