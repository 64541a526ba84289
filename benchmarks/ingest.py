"""Ingestion throughput against raw model encoding and the usual LangChain pipeline.

Phases run in separate subprocesses so each reports its own peak RSS:
  (a) raw `SentenceTransformer.encode` of ragkit's chunks (same model, same precision),
  (b) ragkit's full ingest (load, chunk, embed, write) into a fresh chroma folder,
  (c) LangChain: RecursiveCharacterTextSplitter (characters sized to match the token chunks),
      HuggingFaceEmbeddings with its defaults, Chroma.from_documents,
  (d) re-ingesting the unchanged corpus into the store from (b),
  (e) the local engine as `ragkit ingest` builds it from a pipeline spec, against
  (f) the Ray engine on a local Ray cluster with 1, then 2 workers (same spec, so the same chunks),
      its start-up (ray.init, then worker processes, imports and model load) timed apart from
      the steady-state ingest that is compared with (e).

Usage: python benchmarks/ingest.py [--docs 300] [--chunk-tokens 256] [--overlap 32]
           [--ray-workers 1,2] [--engines-only]
`--engines-only` runs (e) and (f) alone; `--ray-workers ''` leaves Ray out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ragkit.eval.crud_rag import default_crud_dir  # noqa: E402
from ragkit.process import configure_process  # noqa: E402

NEWS = default_crud_dir(REPO) / "news"


def write_corpus(folder: Path, n: int) -> int:
    """The first n articles of the news files, one .txt file each."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(NEWS.iterdir()):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            (folder / f"a{count:05d}.txt").write_text(line, encoding="utf-8")
            count += 1
            if count == n:
                return count
    return count


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _chunker(embedder, args):
    from ragkit.index.chunking import TokenChunker

    return TokenChunker(
        tokenizer=embedder.tokenizer, chunk_tokens=args.chunk_tokens, overlap_tokens=args.overlap
    )


def phase_raw(args) -> dict:
    import torch

    from ragkit.embedding import Embedder
    from ragkit.index.loaders import load_documents

    configure_process()  # as `ragkit ingest` does: every phase runs with the same heap settings
    embedder = Embedder()
    chunks = [
        c for cs in _chunker(embedder, args).batch(list(load_documents([args.corpus]))) for c in cs
    ]
    texts = [c.text for c in chunks]
    model = embedder.warm_up()
    model.encode(texts[:8])  # warm-up outside the clock, as ragkit's model is warm too
    start = time.perf_counter()
    with torch.inference_mode():
        model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True)
    seconds = time.perf_counter() - start
    chars = sum(len(t) for t in texts)
    tokens = sum(c.metadata["token_count"] for c in chunks)
    return {
        "seconds": seconds,
        "chunks": len(texts),
        "chars_per_token": chars / tokens,
        "precision": embedder.dtype,
    }


def phase_ragkit(args) -> dict:
    configure_process()
    from ragkit.embedding import Embedder
    from ragkit.index.ingest import Ingestor
    from ragkit.index.store import ChromaStore

    embedder = Embedder()
    embedder.embed_documents(["warm-up"] * 8)
    store = ChromaStore(args.store, embedding_model=embedder.model_name)
    ingestor = Ingestor(store, embedder, _chunker(embedder, args))
    report = ingestor.ingest([args.corpus], progress=False)
    return {
        "seconds": report.seconds,
        "chunks": report.chunks_added,
        "documents": report.documents_added + report.documents_unchanged,
        "unchanged": report.documents_unchanged,
    }


def phase_langchain(args) -> dict:
    from langchain_chroma import Chroma
    from langchain_core.documents import Document as LCDocument
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from ragkit.models import DEFAULT_EMBEDDING_MODEL, resolve_embedding_model

    embeddings = HuggingFaceEmbeddings(model_name=resolve_embedding_model(DEFAULT_EMBEDDING_MODEL))
    embeddings.embed_documents(["warm-up"] * 8)
    size = round(args.chunk_tokens * args.chars_per_token)
    overlap = round(args.overlap * args.chars_per_token)
    start = time.perf_counter()
    docs = [
        LCDocument(page_content=p.read_text(encoding="utf-8"), metadata={"source": str(p)})
        for p in sorted(Path(args.corpus).iterdir())
    ]
    splitter = RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=overlap)
    pieces = splitter.split_documents(docs)
    Chroma.from_documents(pieces, embeddings, persist_directory=args.store)
    return {
        "seconds": time.perf_counter() - start,
        "chunks": len(pieces),
        "documents": len(docs),
        "chunk_chars": size,
    }


def _spec(args):
    from ragkit.spec import load_spec

    spec = load_spec("naive").with_store(args.store, "bench")
    chunker = spec.chunker.model_copy(
        update={"chunk_tokens": args.chunk_tokens, "overlap_tokens": args.overlap}
    )
    return spec.model_copy(update={"chunker": chunker})


def phase_local(args) -> dict:
    configure_process()
    """The local engine built from a spec, as `ragkit ingest` does, with a warm model."""
    from ragkit import build

    spec = _spec(args)
    build.embedder(spec).embed_documents(["warm-up"] * 8)
    report = build.ingestor(spec).ingest([args.corpus], progress=False)
    return {
        "seconds": report.seconds,
        "chunks": report.chunks_added,
        "documents": report.documents_added,
        "load": os.getloadavg()[0],
    }


def phase_ray(args) -> dict:
    """The Ray engine on a fresh local cluster of this machine's CPUs."""
    from ragkit.distributed.ray_ingest import RayIngestor

    report = RayIngestor(_spec(args), workers=args.workers).ingest([args.corpus], progress=False)
    return {
        "seconds": report.steady_seconds,
        "total_seconds": report.seconds,
        "connect_seconds": report.connect_seconds,
        "pool_seconds": report.pool_seconds,
        "model_load_seconds": report.model_load_seconds,
        "chunks": report.chunks_added,
        "documents": report.documents_added,
        "workers_used": len(set(report.worker_pids)),
        "load": os.getloadavg()[0],
    }


PHASES = {
    "raw": phase_raw,
    "ragkit": phase_ragkit,
    "langchain": phase_langchain,
    "reingest": phase_ragkit,
    "local": phase_local,
    "ray": phase_ray,
}


def run_phase(name: str, **options) -> dict:
    cmd = [sys.executable, __file__, "--phase", name]
    for key, value in options.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        "PYTHONPATH": str(REPO),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def compare_engines(corpus: Path, tmp: Path, n: int, args) -> None:
    """(e) against (f): docs/s and chunks/s, Ray start-up apart, the load average beside each."""
    common = {"corpus": corpus, "chunk_tokens": args.chunk_tokens, "overlap": args.overlap}
    rows = [("(e) local engine", run_phase("local", store=tmp / "local", **common))]
    for workers in args.ray_workers:
        result = run_phase("ray", store=tmp / f"ray{workers}", workers=workers, **common)
        label = f"(f) ray, {workers} worker{'s' if workers > 1 else ''}"
        rows.append((label, result))
    local = rows[0][1]
    print(
        f"{n} CRUD-RAG articles, {args.chunk_tokens}-token chunks (overlap {args.overlap}), "
        f"{os.cpu_count()} CPUs; ingest seconds exclude model load (and Ray's start-up)"
    )
    print(
        f"{'engine':20} {'ingest s':>8} {'docs/s':>7} {'chunks/s':>8} {'vs local':>8} "
        f"{'ray.init s':>10} {'workers ready s':>15} {'model load s':>12} {'load avg':>8}"
    )
    for label, r in rows:
        ray_cols = (
            f"{r['connect_seconds']:10.1f} {r['pool_seconds']:15.1f} "
            f"{r['model_load_seconds']:12.1f}"
            if "pool_seconds" in r
            else f"{'-':>10} {'-':>15} {'-':>12}"
        )
        print(
            f"{label:20} {r['seconds']:8.1f} {r['documents'] / r['seconds']:7.1f} "
            f"{r['chunks'] / r['seconds']:8.1f} {r['seconds'] / local['seconds']:8.2f} "
            f"{ray_cols} {r['load']:8.1f}"
        )
        if r["chunks"] != local["chunks"]:
            print(f"  ! {label} wrote {r['chunks']} chunks, the local engine {local['chunks']}")
    for label, r in rows[1:]:
        if "2 workers" in label:
            ratio = r["seconds"] / local["seconds"]
            verdict = "meets" if ratio <= 1.3 else "misses"
            print(f"ray 2 workers / local time: {ratio:.2f}  ({verdict} the <= 1.3 bar)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--chunk-tokens", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--phase", choices=sorted(PHASES))
    parser.add_argument("--corpus")
    parser.add_argument("--store")
    parser.add_argument("--chars-per-token", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--ray-workers",
        type=lambda text: [int(w) for w in text.split(",") if w.strip()],
        default=[1, 2],
        help="Ray pool sizes to measure, comma-separated ('' for none)",
    )
    parser.add_argument(
        "--engines-only", action="store_true", help="only (e) local engine and (f) Ray"
    )
    args = parser.parse_args()
    if args.phase:
        result = PHASES[args.phase](args)
        result["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(result))
        return
    if not NEWS.is_dir():
        sys.exit(f"{NEWS} is missing: the benchmark needs the CRUD-RAG news files")
    if args.ray_workers and importlib.util.find_spec("ray") is None:
        print("ray is not installed (pip install 'ragkit[ray]'): Ray phases left out")
        args.ray_workers = []
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.engines_only:
        with tempfile.TemporaryDirectory() as tmp:
            n = write_corpus(Path(tmp) / "corpus", args.docs)
            compare_engines(Path(tmp) / "corpus", Path(tmp), n, args)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        n = write_corpus(corpus, args.docs)
        common = {"corpus": corpus, "chunk_tokens": args.chunk_tokens, "overlap": args.overlap}
        raw = run_phase("raw", **common)
        ragkit = run_phase("ragkit", store=Path(tmp) / "ragkit", **common)
        chain = run_phase(
            "langchain", store=Path(tmp) / "lc", chars_per_token=raw["chars_per_token"], **common
        )
        again = run_phase("reingest", store=Path(tmp) / "ragkit", **common)
    rows = [
        ("(a) raw encode", raw),
        ("(b) ragkit ingest", ragkit),
        ("(c) langchain", chain),
        ("(d) re-ingest unchanged", again),
    ]
    print(
        f"{n} CRUD-RAG articles, {args.chunk_tokens}-token chunks (overlap {args.overlap}), "
        f"precision {raw['precision']}, LangChain chunk {chain['chunk_chars']} chars"
    )
    print(f"{'phase':26} {'seconds':>8} {'docs/s':>8} {'chunks':>7} {'chunks/s':>9} {'peak MB':>8}")
    for label, r in rows:
        docs_per_s = n / r["seconds"] if r["seconds"] else float("inf")
        chunks_per_s = r["chunks"] / r["seconds"] if r["seconds"] else float("inf")
        print(
            f"{label:26} {r['seconds']:8.2f} {docs_per_s:8.1f} {r['chunks']:7d} "
            f"{chunks_per_s:9.1f} {r['peak_rss_mb']:8.0f}"
        )
    rate = {k: r["chunks"] / r["seconds"] for k, r in (("a", raw), ("b", ragkit), ("c", chain))}
    print(f"(b)/(a) chunks/s: {rate['b'] / rate['a']:.3f}  (target >= 0.85)")
    print(f"(b)/(c) docs/s:   {chain['seconds'] / ragkit['seconds']:.3f}")
    print(f"(d)/(b) time:     {again['seconds'] / ragkit['seconds']:.4f}  (target <= 0.05)")
    if args.ray_workers:
        print()
        with tempfile.TemporaryDirectory() as tmp:
            write_corpus(Path(tmp) / "corpus", args.docs)
            compare_engines(Path(tmp) / "corpus", Path(tmp), n, args)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
