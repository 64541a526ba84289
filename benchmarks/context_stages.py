"""Context stages against `best`: answer quality, prompt tokens and time to first token when the
passages `best` retrieves are widened (sentence window, parent chunks) or cut to their relevant
sentences (extraction by BM25 or by the model).

Slices: `crud:N` = CRUD-RAG news parts N (the three `documents_dup_part_N_*` files) and the
first `--questions` answerable factoid questions whose article lies there (as
`benchmarks/crud_slices.py` draws them); `create:N` = news continuation over the same files, as
the `crud-news` suite builds it (an article's opening is the question, its own rest the
reference, and the article and its near-copies are left out of the index), scored by CRUD-RAG's
BLEU and ROUGE-L in the columns where read items show contains-reference and token F1;
`bundled:1` / `bundled:2` = the first and second half of the bundled suite's read questions
over its corpus. Every variant is `best` (BM25 over words
and character bigrams, top 5, the local 0.5B model) with some settings changed; retrieval runs
over the slice's chunks in memory, as `ragkit tune` does for lexical variants, with the
expander reading neighbours from the same chunks.

Two phases. `context` generates nothing: for each variant, the share of questions whose
prompt passages contain the reference answer, and the prompt's length in the generator's
tokens. `answer` streams each question through each variant in turn (the order rotates per
question, so no variant always runs first under a changing CPU load) and records the answer,
contains-reference and token F1, the answer prompt's tokens, the tokens of any model calls made
while compressing, and the time from the call to the first answer token. Answers are appended
to `<work>/answers.jsonl` as they finish, so a killed run resumes where it stopped.

    python benchmarks/context_stages.py --phase context --slice crud:3 --questions 100
    python benchmarks/context_stages.py --phase answer --slice crud:1 --slice crud:2 \\
        --slice bundled:1 --slice bundled:2 --questions 100 --work /tmp/ctx \\
        --variant best --variant extract-600 --out benchmarks/results/context_stages.md
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
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

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402

from ragkit import build  # noqa: E402
from ragkit.eval import metrics  # noqa: E402
from ragkit.eval.crud_rag import default_crud_dir  # noqa: E402
from ragkit.eval.runner import pipeline_input  # noqa: E402
from ragkit.eval.scoring import item_scores  # noqa: E402
from ragkit.pipeline import to_query  # noqa: E402
from ragkit.spec import PipelineSpec, load_spec  # noqa: E402
from ragkit.tune.retrieval import in_memory  # noqa: E402
from ragkit.types import Answer  # noqa: E402

CRUD = default_crud_dir(REPO)
# Each variant: `best` with these sections changed (validated as YAML is).
VARIANTS: dict[str, dict[str, Any]] = {
    "best": {},
    "window-0": {"expand": {"mode": "window", "sentences": 0}},
    "window-1": {"expand": {"mode": "window", "sentences": 1}},
    "window-2": {"expand": {"mode": "window", "sentences": 2}},
    "parent": {"expand": {"mode": "parent"}},
    "c128-window-2": {
        "chunker": {"chunk_tokens": 128, "overlap_tokens": 16},
        "expand": {"mode": "window", "sentences": 2},
    },
    "c128-k8-parent": {
        "chunker": {"chunk_tokens": 128, "overlap_tokens": 16},
        "retriever": {"top_k": 8},
        "expand": {"mode": "parent", "parent_chunks": 4, "min_hits": 2},
    },
    "c64-window-2": {
        "chunker": {"chunk_tokens": 64, "overlap_tokens": 8},
        "expand": {"mode": "window", "sentences": 2},
    },
    "extract-300": {"compress": {"mode": "extract", "max_tokens": 300}},
    "extract-450": {"compress": {"mode": "extract", "max_tokens": 450}},
    "extract-500": {"compress": {"mode": "extract", "max_tokens": 500}},
    "extract-600": {"compress": {"mode": "extract", "max_tokens": 600}},
    "extract-800": {"compress": {"mode": "extract", "max_tokens": 800}},
    "k8-extract-600": {
        "retriever": {"top_k": 8},
        "compress": {"mode": "extract", "max_tokens": 600},
    },
    "k8-extract-500": {
        "retriever": {"top_k": 8},
        "compress": {"mode": "extract", "max_tokens": 500},
    },
    "k10-extract-600": {
        "retriever": {"top_k": 10},
        "compress": {"mode": "extract", "max_tokens": 600},
    },
    "c128-k8-parent-extract-600": {
        "chunker": {"chunk_tokens": 128, "overlap_tokens": 16},
        "retriever": {"top_k": 8},
        "expand": {"mode": "parent", "parent_chunks": 4, "min_hits": 2},
        "compress": {"mode": "extract", "max_tokens": 600},
    },
    "c128-k10-extract-600": {
        "chunker": {"chunk_tokens": 128, "overlap_tokens": 16},
        "retriever": {"top_k": 10},
        "compress": {"mode": "extract", "max_tokens": 600},
    },
    "model-600": {"compress": {"mode": "model", "max_tokens": 600}},
}


def spec_of(variant: str) -> PipelineSpec:
    spec = load_spec("best").override(**VARIANTS[variant])
    return spec.model_copy(update={"name": variant})


# ---- data ------------------------------------------------------------------------------------
def slice_data(name: str, questions: int) -> tuple[list[Any], Any]:
    """(items, documents factory) of a slice."""
    kind, _, part = name.partition(":")
    if kind == "crud":
        from crud_slices import slice_dir

        from ragkit.eval.crud_rag import answerable_factoids, load_crud_news

        folder = slice_dir(CRUD / "news", [int(part)])
        items = answerable_factoids(folder, CRUD / "qa" / "questanswer_1doc_factoids.json")
        return items[:questions], lambda: load_crud_news(folder)
    if kind == "create":
        from crud_slices import slice_dir

        from ragkit.eval.crud_news import continuation_items
        from ragkit.eval.crud_rag import load_crud_news

        folder = slice_dir(CRUD / "news", [int(part)])
        creates, left_out = continuation_items(list(load_crud_news(folder)), set(), questions)
        return creates, lambda: (d for d in load_crud_news(folder) if d.id not in left_out)
    if kind == "bundled":
        from ragkit.eval.datasets import load_suite
        from ragkit.index.loaders import load_documents

        suite = load_suite("bundled")
        reads = [i for i in suite.items if i.task == "read"]
        half = (len(reads) + 1) // 2
        chosen = reads[:half] if part == "1" else reads[half:]
        return chosen, lambda: load_documents([suite.corpus])
    raise SystemExit(f"unknown slice {name!r}: use crud:N, create:N or bundled:1/2")


def chunks_for(spec: PipelineSpec, slice_name: str, documents: Any, work: Path) -> list[Any]:
    """The slice's chunks for this chunking, cached in the work folder."""
    c = spec.chunker
    path = work / f"chunks-{slice_name.replace(':', '')}-{c.chunk_tokens}-{c.overlap_tokens}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    chunks = list(build.chunker(spec).split_documents(documents()))
    path.write_bytes(pickle.dumps(chunks))
    return chunks


class Pipelines:
    """One pipeline per variant over a slice's in-memory chunks, made on first use."""

    def __init__(self, slice_name: str, documents: Any, work: Path) -> None:
        self.slice_name, self.documents, self.work = slice_name, documents, work
        self._made: dict[str, Any] = {}
        self._bm25: dict[tuple[int, int], Any] = {}

    def get(self, variant: str) -> Any:
        if variant not in self._made:
            spec = spec_of(variant)
            key = (spec.chunker.chunk_tokens, spec.chunker.overlap_tokens)
            chunks = chunks_for(spec, self.slice_name, self.documents, self.work)
            rag = in_memory(build.pipeline(spec), chunks)
            if key in self._bm25:  # share one BM25 index between variants of one chunking
                rag = rag.model_copy(
                    update={"retriever": self._bm25[key].model_copy(update={"top_k": rag.top_k})}
                )
            else:
                rag.retriever.warm_up()
                self._bm25[key] = rag.retriever
            self._made[variant] = rag
        return self._made[variant]


# ---- phases ----------------------------------------------------------------------------------
def context_phase(args: Any, work: Path) -> list[dict[str, Any]]:
    generator = build.generator(spec_of("best"))
    rows = []
    for slice_name in args.slice:
        items, documents = slice_data(slice_name, args.questions)
        rags = Pipelines(slice_name, documents, work)
        for variant in args.variant:
            rag = rags.get(variant)
            queries = [to_query(pipeline_input(i)) for i in items]
            started = time.perf_counter()
            found = [rag.retrieve([q])[0] for q in queries]
            seconds = (time.perf_counter() - started) / len(queries)
            inside, tokens = [], []
            for item, query, hits in zip(items, queries, found, strict=True):
                refs = list(item.references or (item.reference,))
                inside.append(any(metrics.contains_reference(h.chunk.text, refs) for h in hits))
                tokens.append(len(generator.token_ids(rag.prompt_for(query, hits))))
            rows.append(
                {
                    "slice": slice_name,
                    "variant": variant,
                    "questions": len(items),
                    "answer_in_context": sum(inside) / len(items),
                    "prompt_tokens": statistics.mean(tokens),
                    "passages": statistics.mean(len(h) for h in found),
                    "retrieve_s": seconds,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


class _ModelCalls(BaseCallbackHandler):
    """Prompt tokens of every answer the generator returns during one pipeline call."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []

    def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
        for value in outputs if isinstance(outputs, list) else [outputs]:
            if isinstance(value, Answer):
                self.answers.append(value)


def answer_one(rag: Any, item: Any) -> dict[str, Any]:
    calls = _ModelCalls()
    started = time.perf_counter()
    first = None
    answer = None
    for piece in rag.stream(pipeline_input(item), {"callbacks": [calls]}):
        if piece.text and first is None:
            first = time.perf_counter() - started
        answer = piece.answer or answer
    total = time.perf_counter() - started
    assert answer is not None
    scores = item_scores(item, answer)
    picking = sum(a.usage.prompt_tokens for a in calls.answers) - answer.usage.prompt_tokens
    return {
        "output": answer.text,
        # Read items: the answer against its references; Create items (no short answer):
        # CRUD-RAG's BLEU and ROUGE-L against the article's own continuation.
        "contains_reference": scores.get("contains_reference", scores.get("crud_bleu", 0.0)),
        "token_f1": scores.get("token_f1", scores.get("crud_rouge_l", 0.0)),
        "prompt_tokens": answer.usage.prompt_tokens,
        "picking_prompt_tokens": max(picking, 0),
        "ttft_s": first if first is not None else total,
        "total_s": total,
        "passages": len(answer.retrieved),
    }


def answer_phase(args: Any, work: Path) -> list[dict[str, Any]]:
    path = work / "answers.jsonl"
    done: dict[tuple[str, str, str], dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["slice"], r["variant"], r["item_id"])] = r
    # One untimed call first: the model's first generation pays one-off set-up costs.
    build.generator(spec_of("best")).invoke("Say hello.", max_new_tokens=4)
    with path.open("a", encoding="utf-8") as out:
        for slice_name in args.slice:
            items, documents = slice_data(slice_name, args.questions)
            rags = Pipelines(slice_name, documents, work)
            for n, item in enumerate(items):
                order = (
                    args.variant[n % len(args.variant) :] + args.variant[: n % len(args.variant)]
                )
                for variant in order:
                    limit = args.model_questions if "model" in variant else None
                    if (slice_name, variant, item.id) in done or (limit is not None and n >= limit):
                        continue
                    record = {"slice": slice_name, "variant": variant, "item_id": item.id}
                    record.update(answer_one(rags.get(variant), item))
                    record["load_1min"] = os.getloadavg()[0]
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    out.flush()
                    done[(slice_name, variant, item.id)] = record
                    print(slice_name, n, variant, record["contains_reference"], flush=True)
    return list(done.values())


# ---- report ----------------------------------------------------------------------------------
def answer_table(records: list[dict[str, Any]], baseline: str) -> str:
    """Per slice and variant, over the questions the baseline also answered."""
    lines = [
        "| slice | variant | questions | contains ref. (best) | won / lost | token F1 (best) "
        "| prompt tokens | vs best | picking tokens | TTFT s | vs best | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    slices = sorted({r["slice"] for r in records})
    for s in slices:
        mine = [r for r in records if r["slice"] == s]
        variants = list(dict.fromkeys(r["variant"] for r in mine))
        for v in [baseline, *[v for v in variants if v != baseline]]:
            rows = [r for r in mine if r["variant"] == v]
            ids = {r["item_id"] for r in rows}
            base = [r for r in mine if r["variant"] == baseline and r["item_id"] in ids]
            if not rows or not base:
                continue
            mean = lambda rs, k: statistics.mean(r[k] for r in rs)  # noqa: E731
            right = {r["item_id"]: r["contains_reference"] for r in base}
            won = sum(1 for r in rows if r["contains_reference"] > right[r["item_id"]])
            lost = sum(1 for r in rows if r["contains_reference"] < right[r["item_id"]])
            lines.append(
                f"| {s} | {v} | {len(rows)} | {mean(rows, 'contains_reference'):.3f} "
                f"({mean(base, 'contains_reference'):.3f}) | {won} / {lost} | "
                f"{mean(rows, 'token_f1'):.3f} "
                f"({mean(base, 'token_f1'):.3f}) | {mean(rows, 'prompt_tokens'):.0f} | "
                f"{mean(rows, 'prompt_tokens') / mean(base, 'prompt_tokens'):.2f} | "
                f"{mean(rows, 'picking_prompt_tokens'):.0f} | {mean(rows, 'ttft_s'):.2f} | "
                f"{mean(rows, 'ttft_s') / mean(base, 'ttft_s'):.2f} | "
                f"{mean(rows, 'load_1min'):.1f} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=("context", "answer"), default="answer")
    parser.add_argument("--slice", action="append", required=True)
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--model-questions", type=int, default=40)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ragkit-context-stages"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.variant = args.variant or list(VARIANTS)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.phase == "context":
        rows = context_phase(args, args.work)
        keys = list(rows[0])
        text = "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n"
        for r in rows:
            text += (
                "| "
                + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values())
                + " |\n"
            )
    else:
        text = answer_table(answer_phase(args, args.work), "best")
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
