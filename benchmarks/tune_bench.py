"""`ragkit tune` and `ragkit synth` measured: does a sweep over lexical and chunking choices on
CRUD-RAG factoids find a config at least as good as the hand-built `best` on held-back questions,
and do synthetic questions rank pipeline variants the way real questions do (Kendall tau)?

    python benchmarks/tune_bench.py synth --n 20 --max-candidates 24    # resumable
    flock /tmp/ragkit-bench.lock python benchmarks/tune_bench.py tune    # timed
    python benchmarks/tune_bench.py agree

`synth` writes two suites with the packaged local generator: from the bundled English corpus
and from the CRUD-RAG news slice. `tune` tunes on the real questions of both corpora (CRUD-RAG
factoids, the bundled English suite) with `best` alongside; `agree` scores the same variants on
the synthetic questions over the same corpus and prints Kendall tau between the two rankings,
with the synthetic pairs listed to be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ragkit.eval.crud_rag import default_crud_dir, load_crud_news  # noqa: E402
from ragkit.eval.datasets import load_suite  # noqa: E402
from ragkit.models import cache_dir  # noqa: E402
from ragkit.spec import load_spec  # noqa: E402

CRUD = default_crud_dir(REPO)
WORK = Path(os.environ.get("RAGKIT_TUNE_BENCH_DIR", cache_dir() / "bench-tune"))
OUT = REPO / "benchmarks" / "results" / "tune.md"
ARTICLES = 1000  # a slice two shared CPU cores index in minutes per variant
# Retrieval-only: an answer string occurs in a top-5 chunk (as benchmarks/crud_retrieval.py).
METRIC = "answer_recall@5"
# The CRUD-RAG space: lexical terms and chunking around the hand-built `best` (BM25 top 5).
CRUD_SPACE = {
    "retriever.lexical": ["words", "words+bigrams"],
    "chunker.chunk_tokens": [128, 256],
}
# The English space: retriever kind against chunk size, over the bundled corpus.
ENGLISH_SPACE = {
    "retriever.kind": ["bm25", "dense", "hybrid"],
    "chunker.chunk_tokens": [64, 128, 256],
}


def crud_documents() -> Any:
    return load_crud_news(CRUD, limit=ARTICLES)


def synth(n: int, max_candidates: int, only: str | None) -> None:
    from ragkit import build
    from ragkit.synth.run import synthesize
    from ragkit.synth.sampling import chunk_documents, source_chunks

    spec = load_spec("naive")
    generator = build.generator(spec)
    english = load_suite("bundled").corpus
    assert english is not None
    for name, chunks, corpus in (
        ("synth-en", source_chunks(str(english), spec), english),
        ("synth-crud", chunk_documents(crud_documents(), load_spec("best")), None),
    ):
        if only is not None and name != only:
            continue
        started = time.perf_counter()
        result = synthesize(
            chunks, generator, WORK / name, n=n, corpus=corpus, max_candidates=max_candidates
        )
        print(
            f"{name}: kept {result.kept} of {result.candidates} candidates "
            f"({result.generated} generated in {time.perf_counter() - started:.0f} s); "
            f"dropped {result.dropped}",
            flush=True,
        )


def tune_real() -> None:
    """Tune on the real questions of both corpora from scratch (timed) and save the rows."""
    import shutil

    import yaml

    from ragkit.tune.run import tune
    from ragkit.tune.space import spec_digest
    from ragkit.tune.sweep import TuneOptions

    WORK.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, suite, base, space, extra in (
        ("crud", "crud-rag", "bm25-zh", CRUD_SPACE, {"data": CRUD, "articles": ARTICLES}),
        ("english", "bundled", "naive", ENGLISH_SPACE, {}),
    ):
        space_path = WORK / f"{name}-space.yaml"
        space_path.write_text(yaml.safe_dump({"space": space}, sort_keys=False))
        run_dir = WORK / f"tune-{name}"
        shutil.rmtree(run_dir, ignore_errors=True)  # timed from scratch
        result = tune(
            suite,
            space_path,
            pipeline=base,
            options=TuneOptions(metric=METRIC),
            compare=["best"],
            run_dir=run_dir,
            store_location=str(WORK / "store"),
            **extra,
        )
        best = spec_digest(load_spec("best"))
        best_row = next(r for r in result.rows if r.variant == best)
        results[name] = {
            "seconds": result.seconds,
            "winner": result.winner.label,
            "winner_tuning": result.winner.score(METRIC),
            "winner_held": result.winner.score(METRIC, "held"),
            "best_tuning": best_row.score(METRIC),
            "best_held": best_row.score(METRIC, "held"),
            "variants": len(result.rows),
            "report": result.report,
        }
        print(result.report, flush=True)
    (WORK / "tune-real.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))


def per_variant(records: dict[str, Any], metric: str) -> dict[str, float]:
    """Mean of `metric` per variant over every question."""
    out = {}
    for variant, record in records.items():
        values = [s[metric] for s in record["scores"].values() if metric in s]
        out[variant] = sum(values) / len(values)
    return out


def agreement() -> None:
    """Score the tuned variants on synthetic questions over the same corpus; Kendall tau
    between the two rankings, and the synthetic pairs listed for reading."""
    from scipy.stats import kendalltau

    from ragkit.runlog import read_records
    from ragkit.tune.space import load_space, variants
    from ragkit.tune.sweep import Sweep, TuneOptions

    real = json.loads((WORK / "tune-real.json").read_text())
    sections = []
    for name, base, synth_name, documents in (
        ("crud", "bm25-zh", "synth-crud", crud_documents),
        ("english", "naive", "synth-en", None),
    ):
        suite_dir = WORK / synth_name
        synthetic = load_suite(suite_dir)
        if len(synthetic.items) < 2:
            sections.append(f"### {name}: {len(synthetic.items)} synthetic questions kept\n")
            continue
        chosen = variants(load_space(WORK / f"{name}-space.yaml"), load_spec(base))
        run_dir = WORK / f"agree-{name}"
        sweep = Sweep(
            synthetic,
            chosen,
            run_dir,
            options=TuneOptions(metric=METRIC),
            store_location=str(WORK / "store"),
            documents=documents,
        )
        fake = sweep.run_retrieval()
        records = {r["variant"]: r for r in read_records(WORK / f"tune-{name}" / "retrieval.jsonl")}
        rows = []
        for metric in ("recall@5", METRIC):
            on_real = per_variant({v.id: records[v.id] for v in chosen}, metric)
            on_synth = per_variant(fake, metric)
            ids = [v.id for v in chosen]
            tau = kendalltau([on_real[i] for i in ids], [on_synth[i] for i in ids])
            rows.append((metric, tau.statistic, tau.pvalue, on_real, on_synth))
        report = json.loads((suite_dir / "synth-report.json").read_text())
        sections.append(_agreement_section(name, real[name], chosen, rows, report, synthetic))
    text = "\n".join(sections)
    print(text)
    (WORK / "agreement.md").write_text(text, encoding="utf-8")


def _agreement_section(name, real, chosen, rows, report, synthetic) -> str:
    lines = [f"### {name}: real against synthetic questions", ""]
    lines.append(
        f"synthetic suite: {report['kept']} kept of {report['candidates']} candidates; "
        f"dropped {report['dropped']}"
    )
    lines += [
        "",
        "| variant | " + " | ".join(f"{m} real | {m} synthetic" for m, *_ in rows) + " |",
        "|---|" + "---|---|" * len(rows),
    ]
    for v in chosen:
        cells = [f"{r[3][v.id]:.3f} | {r[4][v.id]:.3f}" for r in rows]
        lines.append(f"| `{v.label}` | " + " | ".join(cells) + " |")
    lines.append("")
    for metric, tau, p, *_ in rows:
        lines.append(f"- Kendall tau by {metric}: {tau:.3f} (p = {p:.3f}, {len(chosen)} variants)")
    lines += ["", "Synthetic pairs:", "", "| id | question | answer | gold |", "|---|---|---|---|"]
    for item in synthetic.items:
        lines.append(f"| {item.id} | {item.query} | {item.reference} | {item.gold_sources[0]} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    s = sub.add_parser("synth")
    s.add_argument("--n", type=int, default=20)
    s.add_argument("--max-candidates", type=int, default=24)
    s.add_argument("--only", choices=["synth-en", "synth-crud"])
    sub.add_parser("tune")
    sub.add_parser("agree")
    args = parser.parse_args(argv)
    if args.stage == "synth":
        synth(args.n, args.max_candidates, args.only)
    elif args.stage == "tune":
        tune_real()
    else:
        agreement()


if __name__ == "__main__":
    main()
