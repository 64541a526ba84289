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

    return LocalGenerator(max_new_tokens=48)
