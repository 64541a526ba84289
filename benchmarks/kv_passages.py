"""Passage KV reuse (`kv_reuse: passages`) against the exact prefix cache (`prefix`): time to
first token, share of prompt tokens computed, and the passage store's memory, on the same
questions after the same warm-up, in one run.

- bundled: the `naive` pipeline; questions 1-12 warm both generators' caches, questions 13-24
  are measured.
- CRUD-RAG: the `best` pipeline (five passages) on a slice; each factoid item's first
  question warms, its later questions (about the same article) are measured; prompts whose five
  passages all came from the store are also reported on their own.

Both generators share the loaded weights and run one request at a time; for each measured
question they alternate in going first, so background load falls on both alike. `--memory N`
instead asks N CRUD-RAG questions, drawn at random from a pool whose passages outgrow the
budget (one new token each), and records the store's bytes and the process's resident memory as
it goes.

    python benchmarks/kv_passages.py [--crud-parts 1] [--crud-items 40] [--out FILE]
    python benchmarks/kv_passages.py --memory 1000 --budget-mb 256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kv_passages_data import (  # noqa: E402
    REPO,
    Question,
    bundled_questions,
    crud_questions,
    slice_label,
)

RESULTS = REPO / "benchmarks" / "results"
MODES = ("prefix", "passages")
DEFAULT = "prefix, append layout"
BAR_COMPUTED = 0.50
BAR_TTFT = 2.5
AIM_TTFT = 3.0


def generators(args: argparse.Namespace) -> dict[str, tuple[Any, str]]:
    """label → (generator, prompt layout): `prefix` and `passages` in `--layout`, and the
    shipped default (`prefix` in the `append` layout) when that is another layout."""
    from ragkit.generation.local import LocalGenerator

    def make(mode: str) -> Any:
        return LocalGenerator(
            kv_reuse=mode,
            max_new_tokens=args.max_new_tokens,
            passage_recompute_tokens=args.recompute,
            passage_recompute_share=args.share,
            passage_cache_bytes=args.budget_mb * 2**20,
        )

    gens = {mode: (make(mode), args.layout) for mode in MODES}
    if args.layout != "append":
        gens[DEFAULT] = (make("prefix"), "append")
    return gens


def record(label: str, question: Question, answer: Any) -> dict[str, Any]:
    u = answer.usage
    return {
        "mode": label,
        "id": question.id,
        "prompt_tokens": u.prompt_tokens,
        "cached": u.cached_prompt_tokens,
        "ttft_s": u.time_to_first_token_s,
        "hits": u.passage_hits,
        "misses": u.passage_misses,
        "text": answer.text,
    }


def run_pair(
    gens: dict[str, tuple[Any, str]], warm: Sequence[Question], measured: Sequence[Question]
) -> list[dict[str, Any]]:
    """Warm every generator with `warm`, then measure `measured`, rotating which goes first."""
    labels = list(gens)
    for question in warm:
        for gen, layout in gens.values():
            gen.invoke(question.prompts[layout])
    rows = []
    for i, question in enumerate(measured):
        for label in labels[i % len(labels) :] + labels[: i % len(labels)]:
            gen, layout = gens[label]
            rows.append(record(label, question, gen.invoke(question.prompts[layout])))
        print(f"  {i + 1}/{len(measured)} {question.id}", flush=True)
    return rows


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    ttft = [r["ttft_s"] for r in rows]
    prompt = sum(r["prompt_tokens"] for r in rows)
    return {
        "p50": statistics.median(ttft),
        "p95": percentile(ttft, 0.95),
        "computed": (prompt - sum(r["cached"] for r in rows)) / prompt,
        "prompt": prompt / len(rows),
    }


def compare(rows: Sequence[dict[str, Any]], label: str) -> list[str]:
    """The table of one workload: per generator and the passages / prefix ratios."""
    labels = [m for m in (*MODES, DEFAULT) if any(r["mode"] == m for r in rows)]
    if "passages" not in labels or "prefix" not in labels:
        return [f"({label}: no measured prompts)"]
    stats = {m: summary([r for r in rows if r["mode"] == m]) for m in labels}
    pas = [r for r in rows if r["mode"] == "passages"]
    hits = sum(r["hits"] for r in pas)
    looked = hits + sum(r["misses"] for r in pas)
    head = " | ".join(labels)
    lines = [
        f"{label}: {len(pas)} prompts, {stats['passages']['prompt']:.0f} tokens on average; "
        f"passage hits {hits}/{looked}",
        "",
        f"| | {head} | passages vs prefix |",
        "|---|" + "---|" * (len(labels) + 1),
    ]
    pre, on = stats["prefix"], stats["passages"]
    for key, name, fmt in (("p50", "TTFT p50, s", "{:.2f}"), ("p95", "TTFT p95, s", "{:.2f}")):
        cells = " | ".join(fmt.format(stats[m][key]) for m in labels)
        lines.append(f"| {name} | {cells} | **{pre[key] / on[key]:.2f}x** sooner |")
    cells = " | ".join(f"{stats[m]['computed']:.1%}" for m in labels)
    ratio = on["computed"] / pre["computed"]
    lines.append(f"| prompt tokens computed | {cells} | {ratio:.2f}x |")
    lines.append(f"| answers identical to prefix's | | | {identical(rows):.0%} |")
    return lines


def identical(rows: Sequence[dict[str, Any]]) -> float:
    texts: dict[str, dict[str, str]] = {}
    for r in rows:
        texts.setdefault(r["id"], {})[r["mode"]] = r["text"]
    pairs = [t for t in texts.values() if "prefix" in t and "passages" in t]
    return sum(t["prefix"] == t["passages"] for t in pairs) / max(len(pairs), 1)


def bar_lines(rows: Sequence[dict[str, Any]], aim: bool) -> list[str]:
    pas = [r for r in rows if r["mode"] == "passages"]
    pre = [r for r in rows if r["mode"] == "prefix"]
    computed = sum(r["prompt_tokens"] - r["cached"] for r in pas) / sum(
        r["prompt_tokens"] for r in pas
    )
    speed = statistics.median(r["ttft_s"] for r in pre) / statistics.median(
        r["ttft_s"] for r in pas
    )
    target = AIM_TTFT if aim else BAR_TTFT
    lines = [
        f"- computed prompt tokens with `passages`: {computed:.1%} "
        f"(bar < {BAR_COMPUTED:.0%}: {'met' if computed < BAR_COMPUTED else 'NOT met'})",
        f"- median TTFT: {speed:.2f}x sooner than `prefix` "
        f"({'aim' if aim else 'bar'} >= {target}x: {'met' if speed >= target else 'NOT met'})",
    ]
    shipped = [r["ttft_s"] for r in rows if r["mode"] == DEFAULT]
    if shipped:
        ratio = statistics.median(shipped) / statistics.median(r["ttft_s"] for r in pas)
        lines.append(f"- median TTFT: {ratio:.2f}x sooner than `prefix` in the `append` layout")
    return lines


def speed(args: argparse.Namespace) -> str:
    gens = generators(args)
    gens["prefix"][0].invoke("Say OK.", max_new_tokens=1)  # load outside the timings
    store = gens["passages"][0].passage_store
    out = []
    bundled = bundled_questions()
    print("bundled: warming with questions 1-12, measuring 13-24", flush=True)
    rows = run_pair(gens, bundled[:12], bundled[12:24])
    out += ["## Bundled suite, `naive` pipeline", "", *compare(rows, "questions 13-24")]
    out += ["", *bar_lines(rows, aim=False)]
    out += [f"- passage store after the bundled run: {store_line(store)}", ""]
    if args.crud_items:
        for gen, _ in gens.values():
            gen.prefix_cache.clear()
        store.clear()
        questions = crud_questions(args.crud_parts)
        groups: dict[str, list[Question]] = {}
        for q in questions:
            groups.setdefault(q.group, []).append(q)
        chosen = [g for g in groups.values() if len(g) > 1][: args.crud_items]
        warm = [g[0] for g in chosen]
        measured = [q for g in chosen for q in g[1:]]
        print(f"crud: {len(warm)} items warm, {len(measured)} follow-ups measured", flush=True)
        crud_rows = run_pair(gens, warm, measured)
        title = f"## CRUD-RAG {slice_label(args.crud_parts)}, `best` pipeline (five passages)"
        out += [title, "", *compare(crud_rows, "follow-up questions")]
        out += ["", *bar_lines(crud_rows, aim=True), ""]
        full = {r["id"] for r in crud_rows if r["mode"] == "passages" and r["hits"] == 5}
        subset = [r for r in crud_rows if r["id"] in full]
        out += [*compare(subset, "prompts whose five passages were all in the store"), ""]
        out += [f"- passage store after the CRUD-RAG run: {store_line(store)}", ""]
        rows += crud_rows
    dump(args, rows)
    return "\n".join(out)


def store_line(store: Any) -> str:
    s = store.stats()
    return (
        f"{s.entries} entries, {s.bytes / 2**20:.1f} MiB of {s.max_bytes / 2**20:.0f} MiB, "
        f"{s.hits} hits, {s.misses} misses, {s.evictions} evictions"
    )


def memory(args: argparse.Namespace) -> str:
    """`--memory N` questions through the passage budget; the bound must hold throughout."""
    import psutil

    from ragkit.generation.local import LocalGenerator

    gen = LocalGenerator(
        kv_reuse="passages",
        max_new_tokens=1,
        passage_cache_bytes=args.budget_mb * 2**20,
        passage_recompute_tokens=args.recompute,
        passage_recompute_share=args.share,
    )
    store = gen.passage_store
    # Drawn at random from a pool whose passages outgrow the budget, so the store keeps
    # evicting while later draws still find some of their passages stored.
    pool = crud_questions(args.crud_parts)[: args.memory_pool]
    draw = random.Random(0)
    questions = [draw.choice(pool) for _ in range(args.memory)]
    process = psutil.Process()
    peak, rss = 0, []
    started = time.perf_counter()
    for i in range(0, len(questions), 8):
        gen.batch([q.prompts[args.layout] for q in questions[i : i + 8]])
        peak = max(peak, store.total_bytes)
        rss.append(process.memory_info().rss)
        if (i // 8) % 10 == 0:
            print(f"  {i + 8}/{len(questions)}: {store_line(store)}", flush=True)
    wall = time.perf_counter() - started
    return "\n".join(
        [
            f"## Memory: {len(questions)} CRUD-RAG questions (drawn with replacement from the "
            f"first {len(pool)} of {slice_label(args.crud_parts)}), passage budget "
            f"{args.budget_mb} MiB, batches of 8",
            "",
            f"- store at the end: {store_line(store)}",
            f"- largest store size seen (checked after every batch of 8): {peak / 2**20:.1f} MiB "
            f"({'within' if peak <= store.max_bytes else 'OVER'} the budget)",
            f"- process resident memory: {rss[0] / 2**30:.2f} GiB after the first batch, "
            f"{max(rss) / 2**30:.2f} GiB at most, {rss[-1] / 2**30:.2f} GiB at the end",
            f"- wall time {wall:.0f} s",
        ]
    )


def dump(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    path = args.out.with_suffix(".jsonl")
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crud-parts", type=int, nargs="+", default=[1])
    parser.add_argument("--crud-items", type=int, default=40, help="0 skips CRUD-RAG")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--layout", choices=("append", "prepend"), default="prepend")
    parser.add_argument("--recompute", type=int, default=16, help="passage_recompute_tokens")
    parser.add_argument("--share", type=float, default=0.1, help="passage_recompute_share")
    parser.add_argument("--memory", type=int, default=0, help="questions of the memory run")
    parser.add_argument("--budget-mb", type=int, default=1024, help="passage store budget")
    parser.add_argument("--memory-pool", type=int, default=100, help="questions drawn from")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    name = "kv_passages_memory.md" if args.memory else "kv_passages.md"
    args.out = args.out or RESULTS / name
    before = "/".join(f"{x:.1f}" for x in os.getloadavg())
    text = memory(args) if args.memory else speed(args)
    after = "/".join(f"{x:.1f}" for x in os.getloadavg())
    from ragkit.generation.local import resolve_dtype

    header = [
        "# Passage KV reuse against the prefix cache"
        if not args.memory
        else "# Passage store memory",
        "",
        f"Local generator ({resolve_dtype('auto')}), {platform.machine()}, {os.cpu_count()} cores; "
        f"load average {before} at the start, {after} at the end (1/5/15 min). "
        f"Command: `python {' '.join(sys.argv)}`.",
        "",
    ]
    report = "\n".join(header) + text + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
