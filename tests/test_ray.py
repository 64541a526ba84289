"""The Ray engine against the local one: a real local Ray cluster, a real `chroma run` server and
the real embedding and generation models. Ingestion must write the same chunk ids, metadata,
manifest and (within float noise) vectors; a worker killed mid-job must cost nothing; and an
evaluation must score the same items the same way."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CRUD_DIR, free_port
from conftest import chroma_server as start_chroma_server
from typer.testing import CliRunner

from ragkit import build
from ragkit.index.store import ChromaStore
from ragkit.spec import load_spec

# One worker runs the whole module, so its Ray cluster and chroma server start once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

NEWS = CRUD_DIR / "news"
# Embedding runs at roughly 10-30 chunks/s on a shared two-core machine (~3.8 chunks per article
# at 256 tokens), and each Ray worker loads its own models: 20 articles (~75 chunks, several
# batches per worker) keep both engines' comparison exact while the suite stays short;
# benchmarks/ingest.py measures 1,000. The killed run uses 12 articles, three batches of 4, so
# a replacement worker has work left.
ARTICLES = 20
KILLED_ARTICLES = 12
KILLED_BATCH = 4
WORKERS = 2


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    """A two-CPU Ray cluster private to this module: no dashboard, no usage reporting, no
    memory monitor, bound to loopback; shut down at the end."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed: pip install 'ragkit[ray]'")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_memory_monitor_refresh_ms"] = "0"  # noqa: SIM112  (Ray's own spelling)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.WARNING,
        _node_ip_address="127.0.0.1",
    )
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    """A real `chroma run` on a free loopback port, as the store Ray runs write to."""
    with start_chroma_server(tmp_path_factory.mktemp("chroma-server")) as url:
        yield url


@pytest.fixture(scope="module")
def news_corpus(tmp_path_factory) -> Path:
    """CRUD-RAG articles as files: one .txt per article, a few as JSONL records, one empty."""
    if not NEWS.is_dir():
        pytest.skip(f"{NEWS} is not present")
    from ragkit.eval.crud_rag import load_crud_news

    folder = tmp_path_factory.mktemp("news")
    docs = list(load_crud_news(NEWS, limit=ARTICLES))
    assert len(docs) == ARTICLES
    with (folder / "records.jsonl").open("w", encoding="utf-8") as records:
        for doc in docs[:5]:
            fields = {"text": doc.text, "date": doc.metadata["date"], "line": doc.metadata["line"]}
            records.write(json.dumps(fields, ensure_ascii=False) + "\n")
    for i, doc in enumerate(docs[5:]):
        (folder / f"a{i:04d}.txt").write_text(doc.text, encoding="utf-8")
    (folder / "empty.txt").write_text("  \n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def news_spec(embedder):
    """The naive spec; the test run's embedder serves the local path in this process."""
    spec = load_spec("naive")
    build.register_embedder(spec.embedder, embedder)
    return spec


@pytest.fixture(scope="module")
def local_news(tmp_path_factory, news_spec, news_corpus):
    """The reference: the corpus ingested by the local engine into a folder store."""
    spec = news_spec.with_store(str(tmp_path_factory.mktemp("local-news")), "news-local")
    report = build.ingestor(spec).ingest([news_corpus], progress=False)
    return spec, report, _snapshot(build.store(spec))


def _snapshot(store: ChromaStore) -> dict:
    return {
        "ids": set(store.chunk_ids()),
        "chunks": {c.id: c for c in store.get_chunks()},
        "manifest": store.documents(),
        "count": store.count(),
    }


def _subset(snapshot: dict, keep) -> dict:
    """The part of a snapshot whose documents' sources `keep` accepts."""
    manifest = {i: d for i, d in snapshot["manifest"].items() if keep(d.source)}
    chunks = {i: c for i, c in snapshot["chunks"].items() if c.doc_id in manifest}
    return {"ids": set(chunks), "chunks": chunks, "manifest": manifest, "count": len(chunks)}


def _vectors(location: str, collection: str) -> dict[str, np.ndarray]:
    """Every stored vector by chunk id, read with chroma's own client."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if location.startswith("http"):
        host, port = location.removeprefix("http://").split(":")
        client = chromadb.HttpClient(host=host, port=int(port), settings=settings)
    else:
        client = chromadb.PersistentClient(path=location, settings=settings)
    got = client.get_collection(collection).get(include=["embeddings"])
    pairs = zip(got["ids"], got["embeddings"], strict=True)
    return {cid: np.asarray(vector, dtype=np.float32) for cid, vector in pairs}


def _cosines(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> np.ndarray:
    ids = sorted(a)
    x = np.stack([a[i] for i in ids])
    y = np.stack([b[i] for i in ids])
    return (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))


def _worker_pids() -> set[int]:
    """This test's Ray pool workers: descendants of this process named after the fused map."""
    import psutil

    pids = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if "MapWorker(" in " ".join(child.cmdline()):
                pids.add(child.pid)
        except psutil.Error:
            continue
    return pids


# -- ingestion --------------------------------------------------------------------------------


def test_ray_ingest_matches_local_ingest(
    ray_cluster, chroma_server, news_spec, news_corpus, local_news
):
    from ragkit.distributed.ray_ingest import RayIngestor

    local_spec, local_report, local = local_news
    corpus = news_corpus
    spec = news_spec.with_store(chroma_server, "news-ray")
    report = RayIngestor(spec, workers=WORKERS, doc_batch_size=8).ingest([corpus], progress=False)

    assert report.documents_added == local_report.documents_added == ARTICLES
    assert report.chunks_added == local_report.chunks_added == local["count"]
    assert [(i.path, i.reason) for i in report.issues] == [
        (i.path, i.reason) for i in local_report.issues
    ]
    assert report.workers == WORKERS and len(set(report.worker_pids)) == WORKERS
    assert 0 < report.pool_seconds < report.seconds
    ray_side = _snapshot(build.store(spec))
    assert ray_side["ids"] == local["ids"]
    assert ray_side["chunks"] == local["chunks"]  # text, offsets and metadata, exactly
    assert ray_side["manifest"] == local["manifest"]
    assert all(d.complete for d in ray_side["manifest"].values())

    cos = _cosines(
        _vectors(local_spec.store.location, local_spec.store.collection),
        _vectors(chroma_server, "news-ray"),
    )
    assert len(cos) == local["count"] and cos.min() > 0.999

    again = RayIngestor(spec, workers=WORKERS).ingest([corpus], progress=False)
    assert (again.documents_added, again.documents_unchanged, again.chunks_added) == (
        0,
        ARTICLES,
        0,
    )
    assert _snapshot(build.store(spec)) == ray_side


class _KillingStore(ChromaStore):
    """A store that, on its first write, SIGKILLs one of the pool's worker processes: the
    failure a crashed or preempted node causes, made to happen mid-job."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.killed: int | None = None
        self.alive_then: set[int] = set()

    def upsert(self, chunks, vectors) -> None:
        super().upsert(chunks, vectors)
        if self.killed is None:
            self.alive_then = _worker_pids()
            assert self.alive_then, "no Ray pool worker found to kill"
            self.killed = min(self.alive_then)
            os.kill(self.killed, signal.SIGKILL)


def test_killed_worker_loses_and_duplicates_nothing(
    tmp_path, ray_cluster, chroma_server, news_spec, news_corpus, local_news
):
    from ragkit.distributed.ray_ingest import RayIngestor

    _, _, local = local_news
    corpus = tmp_path / "subset"  # links keep sources (resolved paths), so doc ids, the same
    corpus.mkdir()
    files = sorted(news_corpus.iterdir())[:KILLED_ARTICLES]
    for file in files:
        (corpus / file.name).symlink_to(file)
    kept = {str(f.resolve()) for f in files}
    local = _subset(local, lambda source: source.split("#")[0] in kept)
    spec = news_spec.with_store(chroma_server, "news-killed")
    store = _KillingStore(chroma_server, "news-killed", embedding_model=spec.embedder.model)
    report = RayIngestor(spec, workers=WORKERS, doc_batch_size=KILLED_BATCH, store=store).ingest(
        [corpus], progress=False
    )

    assert store.killed is not None
    assert set(report.worker_pids) - store.alive_then, "no replacement worker did any work"
    assert report.documents_added == len(local["manifest"]) and not report.interrupted
    after = _snapshot(ChromaStore(chroma_server, "news-killed"))
    assert after["ids"] == local["ids"]
    assert after["count"] == local["count"] == len(after["ids"])
    assert after["chunks"] == local["chunks"]
    assert after["manifest"] == local["manifest"]
    assert all(d.complete for d in after["manifest"].values())


def test_cli_ingest_on_ray_then_unchanged(ray_cluster, chroma_server, bundled_corpus, news_spec):
    from ragkit.cli import app

    runner = CliRunner()
    args = ["ingest", str(bundled_corpus), "--store", chroma_server, "--collection", "cli-ray"]
    first = runner.invoke(app, [*args, "--engine", "ray", "--workers", "2"])
    assert first.exit_code == 0, first.output
    assert " 0 unchanged" in first.output and "ray: 2 workers; start-up" in first.output
    second = runner.invoke(app, [*args, "--engine", "ray", "--workers", "2"])
    assert second.exit_code == 0, second.output
    assert " 0 added" in second.output and "0 chunks written" in second.output
    local = runner.invoke(app, [*args])  # the local engine sees the Ray-written index as its own
    assert local.exit_code == 0 and " 0 added" in local.output, local.output


def test_bad_engine_options_are_one_line_errors(tmp_path, repo_root):
    from ragkit.cli import app

    runner = CliRunner()
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "a.txt").write_text("One line.", encoding="utf-8")
    store = ["--store", str(tmp_path / "idx")]
    result = runner.invoke(app, ["ingest", str(corpus), *store, "--workers", "2"])
    assert result.exit_code == 1 and "--address and --workers need --engine ray" in result.output
    result = runner.invoke(app, ["ingest", str(corpus), *store, "--engine", "spark"])
    assert result.exit_code == 1 and "--engine must be 'local' or 'ray'" in result.output
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    port = free_port()  # nothing listens there
    unreachable = subprocess.run(
        [sys.executable, "-m", "ragkit.cli", "ingest", str(corpus), *store]
        + ["--engine", "ray", "--address", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert unreachable.returncode == 1
    assert f"Ray cluster at 127.0.0.1:{port} cannot be reached" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    no_ray = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['ray'] = None; "
         "from ragkit.cli import app; app()", "ingest", str(corpus), *store, "--engine", "ray"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )  # fmt: skip
    assert no_ray.returncode == 1
    assert "pip install 'ragkit[ray]'" in no_ray.stderr and "Traceback" not in no_ray.stderr


def test_remote_spec_differs_from_naive_only_in_locations():
    naive, remote = load_spec("naive").model_dump(), load_spec("remote").model_dump()
    changed = {k for k in naive if naive[k] != remote[k]}
    assert changed == {"name", "description", "store", "generator"}
    assert remote["store"]["location"].startswith("http://")
    assert remote["generator"]["kind"] == "openai" and remote["generator"]["base_url"]
    assert {k: v for k, v in remote["generator"].items() if k not in ("kind", "base_url")} == {
        k: v for k, v in naive["generator"].items() if k not in ("kind", "base_url")
    }


# -- evaluation -------------------------------------------------------------------------------


def test_eval_on_ray_scores_items_like_a_local_run(
    ray_cluster, chroma_server, tmp_path, repo_root, embedder, local_generator
):
    from ragkit.cli import app

    # The bundled suite's read items over its corpus: each item costs a minute or more of CPU
    # generation on a busy two-core machine, so two items, one per worker, and short answers.
    bundled = repo_root / "evals" / "bundled"
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        f"name: bundled-read\ncorpus: {bundled / 'corpus'}\n"
        f"tasks:\n  read: {bundled / 'questions.jsonl'}\n",
        encoding="utf-8",
    )
    spec = tmp_path / "short.yaml"  # naive with two passages and short answers, as elsewhere
    spec.write_text(
        "retriever: {kind: dense, top_k: 2}\n"
        "generator: {kind: local, max_new_tokens: 24}\n"
        "prompt: {layout: append}\n",
        encoding="utf-8",
    )
    build.register_generator(load_spec(spec).generator, local_generator)
    build.register_embedder(load_spec(spec).embedder, embedder)
    common = ["eval", "--suite", str(suite), "-p", str(spec), "--limit", "2", "--no-ragas"]
    common += ["--batch-size", "1"]
    on_ray = [*common, "--run-dir", str(tmp_path / "ray"), "--store", chroma_server]
    on_ray += ["--engine", "ray", "--workers", str(WORKERS)]
    runner = CliRunner()
    local = runner.invoke(
        app, [*common, "--run-dir", str(tmp_path / "local"), "--store", str(tmp_path / "index")]
    )
    assert local.exit_code == 0, local.output
    ray_run = runner.invoke(app, on_ray)  # its own index, built on Ray, on the chroma server
    assert ray_run.exit_code == 0, ray_run.output
    assert "2 items computed, 0 from cache" in ray_run.output

    def records(folder: str) -> dict:
        lines = (tmp_path / folder / "items.jsonl").read_text(encoding="utf-8").splitlines()
        return {(r["pipeline"], r["item_id"]): r for r in map(json.loads, lines)}

    mine, theirs = records("local"), records("ray")
    assert set(mine) == set(theirs) and len(mine) == 2
    retrieval = ("recall@", "mrr@", "answer_recall@")
    for key, record in mine.items():
        other = theirs[key]
        assert [r["chunk_id"] for r in record["retrieved"]] == [
            r["chunk_id"] for r in other["retrieved"]
        ]
        assert {n for n in record["scores"] if n.startswith(retrieval)} >= {"recall@1", "mrr@10"}
        for name, value in record["scores"].items():
            if name.startswith(retrieval):
                assert other["scores"][name] == value, (key, name)
        assert other["output"] == record["output"], key  # greedy decoding on both sides
    for name in ("summary.json", "report.md"):
        assert (tmp_path / "ray" / name).is_file()
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert set(summary) == {"short"}

    resumed = runner.invoke(app, on_ray)
    assert resumed.exit_code == 0 and "0 items computed, 2 from cache" in resumed.output
