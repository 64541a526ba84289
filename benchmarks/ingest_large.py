"""Ingesting one large text file: peak memory against a small ingest, and resuming after a kill.

Each ingest runs in its own subprocess whose resident memory is sampled (with its children)
every 0.1 s; the peak includes the loaded embedding model, as a user's process would.

  memory: (s) a small ingest (`--small-docs` news articles, run to the end) against (l) an
          ingest of one `--mb` MB file, stopped after `--seconds` s or at its end, with this
          checkout's code and, unless `--baseline ''`, with the code at `--baseline` (a
          checkout of the version before). Prints each peak and its ratio to (s).
  chunking: the part of (l) that grows with the file, alone and run to the end: loading and
          chunking one `--mb` MB file (no model, no store), all at once as the code at
          `--baseline` does and piece by piece as this checkout does; peak RSS of each.
  resume: one `--mb` MB file ingested until about half of its chunks are stored, killed
          (SIGKILL), then ingested again; prints how many chunks the second run embedded and
          how many it found already stored, and checks the store has every chunk once.

The text is CRUD-RAG news articles joined with blank lines (the benchmark needs
../shared/data/crud-rag/news). Run under `flock /tmp/ragkit-bench.lock`.

Usage: python benchmarks/ingest_large.py chunking [--mb 20] [--baseline ../wt-baseline]
       python benchmarks/ingest_large.py memory [--mb 20] [--seconds 240]
                                                [--baseline ../wt-baseline] [--small-docs 100]
       python benchmarks/ingest_large.py resume [--mb 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ragkit.eval.crud_rag import default_crud_dir  # noqa: E402

NEWS = default_crud_dir(REPO) / "news"

# The children run this checkout's code or the baseline's, so they import through the paths both
# have (`ragkit.store`, `ragkit.loaders` and `ragkit.chunking` re-export the moved modules).
CHILD = """
import json, sys, time
import ragkit
print(json.dumps({"code": ragkit.__file__}), flush=True)
try:  # what `ragkit ingest` sets up first (older code did it when the embedder loaded)
    from ragkit.process import configure_process
except ImportError:
    pass
else:
    configure_process()
from ragkit import build
from ragkit.spec import load_spec
from ragkit.store import ChromaStore

class Announcing(ChromaStore):
    def upsert(self, chunks, vectors):
        super().upsert(chunks, vectors)
        print(json.dumps({"wrote": len(chunks)}), flush=True)

spec = load_spec("naive").with_store(sys.argv[2])
ingestor = build.ingestor(spec)
ingestor.store = Announcing(sys.argv[2], embedding_model=spec.embedder.model)
started = time.perf_counter()
report = ingestor.ingest([sys.argv[1]], progress=False)
print(json.dumps({
    "done": True,
    "seconds": time.perf_counter() - started,
    "chunks_added": report.chunks_added,
    "chunks_reused": getattr(report, "chunks_reused", None),
    "documents_added": report.documents_added,
}), flush=True)
"""


CHUNK_CHILD = """
import json, resource, sys, time
from ragkit.loaders import load_documents
from ragkit.spec import load_spec

spec = load_spec("naive")
from ragkit.chunking import TokenChunker
c = spec.chunker
chunker = TokenChunker(chunk_tokens=c.chunk_tokens, overlap_tokens=c.overlap_tokens)
started = time.perf_counter()
(doc,) = load_documents([sys.argv[1]])
count = 0
if sys.argv[2] == "pieces":
    from ragkit.index.chunk_stream import chunk_pieces
    for piece in chunk_pieces(chunker, doc):
        count += len(piece)
else:
    count = len(chunker.batch([doc])[0])
print(json.dumps({
    "chunks": count,
    "seconds": time.perf_counter() - started,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def news_lines() -> list[str]:
    lines = []
    for path in sorted(NEWS.iterdir()):
        lines += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines


def write_large(path: Path, megabytes: float) -> int:
    """One file of news articles, blank-line separated, of at least `megabytes` MB."""
    target = int(megabytes * 1024 * 1024)
    with path.open("w", encoding="utf-8") as out:
        size = 0
        while size < target:
            for line in news_lines():
                out.write(line + "\n\n")
                size += len(line.encode()) + 2
                if size >= target:
                    break
    return path.stat().st_size


def write_small(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, line in enumerate(news_lines()[:n]):
        (folder / f"a{i:05d}.txt").write_text(line, encoding="utf-8")


def run_ingest(
    corpus: Path,
    store: Path,
    code: Path,
    *,
    seconds: float | None = None,
    kill_at_chunks: int | None = None,
) -> dict:
    """Ingest in a subprocess with `code` first on the path; peak RSS sampled from outside."""
    import psutil

    env = {
        **os.environ,
        "PYTHONPATH": str(code),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(corpus), str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=store.parent,  # not the repo: `python -c` puts the working folder first on the path
    )
    events: list[dict] = []
    reader = threading.Thread(
        target=lambda: events.extend(json.loads(line) for line in proc.stdout if line.strip()),
        daemon=True,
    )
    reader.start()
    watched = psutil.Process(proc.pid)
    peak = 0
    started = time.perf_counter()
    killed = False
    while proc.poll() is None:
        try:
            rss = watched.memory_info().rss + sum(
                c.memory_info().rss for c in watched.children(recursive=True)
            )
            peak = max(peak, rss)
        except psutil.Error:
            pass
        written = sum(e.get("wrote", 0) for e in list(events))
        over_time = seconds is not None and time.perf_counter() - started > seconds
        if over_time or (kill_at_chunks is not None and written >= kill_at_chunks):
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.1)
    proc.wait()
    reader.join(timeout=10)
    written = sum(e.get("wrote", 0) for e in events)
    result = {k: v for e in events for k, v in e.items() if k != "wrote"}
    return {
        **result,
        "peak_rss_mb": peak / 2**20,
        "chunks_written": written,
        "killed": killed,
        "wall_seconds": time.perf_counter() - started,
    }


def total_chunks(path: Path) -> int:
    """How many chunks the file makes, counted by chunking alone (no embedding)."""
    from ragkit import build
    from ragkit.index.chunk_stream import chunk_pieces
    from ragkit.index.loaders import load_documents
    from ragkit.spec import load_spec

    chunker = build.chunker(load_spec("naive"))
    (doc,) = load_documents([path])
    return sum(len(piece) for piece in chunk_pieces(chunker, doc))


def memory(args: argparse.Namespace, tmp: Path) -> None:
    small = tmp / "small"
    write_small(small, args.small_docs)
    large = tmp / "large.txt"
    size = write_large(large, args.mb)
    rows = [("(s) small ingest", run_ingest(small, tmp / "s-store", REPO))]
    codes = [("this code", REPO)]
    if args.baseline:
        codes.append(("baseline", Path(args.baseline).resolve()))
    for name, code in codes:
        result = run_ingest(large, tmp / f"l-{name}", code, seconds=args.seconds)
        rows.append((f"(l) {args.mb:g} MB, {name}", result))
    base = rows[0][1]["peak_rss_mb"]
    print(
        f"{args.small_docs} news articles vs one {size / 2**20:.1f} MB file "
        f"(large runs stopped after {args.seconds:.0f} s or at their end)"
    )
    print(f"{'run':30} {'peak RSS MB':>11} {'vs (s)':>7} {'chunks written':>14} {'ran s':>6}")
    for label, r in rows:
        print(
            f"{label:30} {r['peak_rss_mb']:11.0f} {r['peak_rss_mb'] / base:7.2f} "
            f"{r['chunks_written']:14d} {r['wall_seconds']:6.0f}"
            + ("  (stopped)" if r["killed"] else "")
            + f"  [{Path(r.get('code', '?')).parent.parent}]"
        )


def chunking(args: argparse.Namespace, tmp: Path) -> None:
    large = tmp / "large.txt"
    size = write_large(large, args.mb)
    small = tmp / "small.txt"
    write_large(small, 0.05)
    runs = [("50 KB file, this code", small, REPO, "pieces")]
    runs.append((f"{args.mb:g} MB file, this code", large, REPO, "pieces"))
    if args.baseline:
        base = Path(args.baseline).resolve()
        runs.append((f"{args.mb:g} MB file, baseline", large, base, "whole"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    print(f"load and chunk only (default tokenizer, 256/32 tokens); {size / 2**20:.1f} MB file")
    print(f"{'run':28} {'peak RSS MB':>11} {'chunks':>7}")
    for label, path, code, how in runs:
        out = subprocess.run(
            [sys.executable, "-c", CHUNK_CHILD, str(path), how],
            capture_output=True,
            text=True,
            check=True,
            env={**env, "PYTHONPATH": str(code)},
            cwd=tmp,  # not the repo: `python -c` puts the working folder first on the path
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{label:28} {r['peak_rss_mb']:11.0f} {r['chunks']:7d}")


def resume(args: argparse.Namespace, tmp: Path) -> None:
    from ragkit.index.store import ChromaStore

    large = tmp / "large.txt"
    size = write_large(large, args.mb)
    total = total_chunks(large)
    store = tmp / "store"
    first = run_ingest(large, store, REPO, kill_at_chunks=total // 2)
    stored_after_kill = ChromaStore(store).count()
    second = run_ingest(large, store, REPO)
    check = ChromaStore(store)
    (record,) = check.documents().values()
    ids = check.chunk_ids()
    print(f"one {size / 2**20:.1f} MB file, {total} chunks; first run killed at half")
    print(f"stored when killed:           {stored_after_kill}")
    print(f"rerun embedded:               {second.get('chunks_added')}")
    print(f"rerun found already stored:   {second.get('chunks_reused')}")
    print(f"rerun seconds:                {second.get('seconds', float('nan')):.0f}")
    print(f"first run seconds until kill: {first['wall_seconds']:.0f}")
    print(
        f"after the rerun: {len(ids)} chunks stored, {len(set(ids))} distinct, manifest says "
        f"{record.chunks}, complete={record.complete}"
    )
    ok = (
        second.get("chunks_added", 0) + second.get("chunks_reused", 0) == total
        and second.get("chunks_reused") == stored_after_kill
        and len(ids) == len(set(ids)) == record.chunks == total
        and record.complete
    )
    print(f"rerun embedded only what was missing, no duplicates: {ok}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["memory", "chunking", "resume"])
    parser.add_argument("--mb", type=float, default=None)
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--baseline", default=str(REPO.parent / "wt-baseline"))
    parser.add_argument("--small-docs", type=int, default=100)
    args = parser.parse_args()
    if args.mb is None:
        args.mb = 2.0 if args.mode == "resume" else 20.0
    if not NEWS.is_dir():
        sys.exit(f"{NEWS} is missing: the benchmark needs the CRUD-RAG news files")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        {"memory": memory, "chunking": chunking, "resume": resume}[args.mode](args, Path(tmp))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
