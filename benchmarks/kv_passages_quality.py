"""Answer quality with passage KV reuse against full prefill, on the same prompts.

Every question of each set is answered by the local generator with `kv_reuse: prefix` (the
default; its greedy output is that of a full prefill, which the identity tests hold it to) and
with `kv_reuse: passages`; both run the same batches in the same order. Reported per set: the
share of identical answers, answers containing the reference, token F1 and ROUGE-L against the
reference, and with `passages` the share of prompt tokens computed. Sets: the bundled suite's
24 read questions (`naive` pipeline) and CRUD-RAG slices (`best` pipeline, five passages).

Long and resumable: answers go to `--work`/<set>.jsonl as they finish, and a rerun skips what
is there. Run it in the background:

    nohup python benchmarks/kv_passages_quality.py --slices 1 2 --work /tmp/kvq > kvq.log &
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

MODES = ("prefix", "passages")
BASELINE = MODES[0]
BAR_POINTS = 2.0


def answer_all(
    sets: dict[str, list[Question]], work: Path, args: argparse.Namespace
) -> dict[str, list[dict[str, Any]]]:
    from ragkit.generation.local import LocalGenerator

    gens = {
        mode: LocalGenerator(
            kv_reuse=mode,
            max_new_tokens=args.max_new_tokens,
            passage_recompute_tokens=args.recompute,
            passage_recompute_share=args.share,
        )
        for mode in MODES
    }
    out = {}
    began = time.monotonic()
    for name, questions in sets.items():
        path = work / f"{name.replace(' ', '_').replace('+', '-')}.jsonl"
        done = [json.loads(line) for line in path.open(encoding="utf-8")] if path.exists() else []
        seen = {(r["mode"], r["id"]) for r in done}
        for start in range(0, len(questions), args.batch):
            part = questions[start : start + args.batch]
            for mode in args.modes:
                todo = [q for q in part if (mode, q.id) not in seen]
                if not todo:
                    continue
                answers = gens[mode].batch([q.prompts[args.layout] for q in todo])
                with path.open("a", encoding="utf-8") as f:
                    for q, a in zip(todo, answers, strict=True):
                        row = {"mode": mode, "id": q.id, "text": a.text, **usage(a)}
                        done.append(row)
                        f.write(json.dumps(row, ensure_ascii=False) + "\n")
            done_n = min(start + args.batch, len(questions))
            print(
                f"{name}: {done_n}/{len(questions)} at {time.monotonic() - began:.0f} s", flush=True
            )
        out[name] = done
    return out


def usage(answer: Any) -> dict[str, Any]:
    u = answer.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "cached": u.cached_prompt_tokens,
        "hits": u.passage_hits,
        "misses": u.passage_misses,
    }


def table(sets: dict[str, list[Question]], rows: dict[str, list[dict[str, Any]]]) -> list[str]:
    from ragkit.eval.metrics import contains_reference, token_f1, word_rouge_l

    lines = [
        "| set | questions | identical answers | contains reference: prefix / passages "
        "| difference | token F1: prefix / passages | ROUGE-L: prefix / passages "
        "| prompt tokens computed (passages) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for name, questions in sets.items():
        by = {(r["mode"], r["id"]): r for r in rows[name]}
        qs = [q for q in questions if all((m, q.id) in by for m in MODES)]
        if not qs:
            continue
        score: dict[str, dict[str, float]] = {}
        for mode in MODES:
            texts = [by[(mode, q.id)]["text"] for q in qs]
            refs = [q.references for q in qs]
            score[mode] = {
                "acc": sum(contains_reference(t, r) for t, r in zip(texts, refs, strict=True)),
                "f1": sum(max(token_f1(t, x) for x in r) for t, r in zip(texts, refs, strict=True)),
                "rouge": sum(
                    word_rouge_l(t, r[0]) if t.strip() else 0.0
                    for t, r in zip(texts, refs, strict=True)
                ),
            }
        n = len(qs)
        same = sum(by[(BASELINE, q.id)]["text"] == by[("passages", q.id)]["text"] for q in qs)
        pas = [by[("passages", q.id)] for q in qs]
        computed = 1 - sum(r["cached"] for r in pas) / sum(r["prompt_tokens"] for r in pas)
        off, on = score[BASELINE], score["passages"]
        points = (on["acc"] - off["acc"]) / n * 100
        lines.append(
            f"| {name} | {n} | {same / n:.1%} | {off['acc'] / n:.1%} / {on['acc'] / n:.1%} "
            f"| {points:+.1f} pts | {off['f1'] / n:.3f} / {on['f1'] / n:.3f} "
            f"| {off['rouge'] / n:.3f} / {on['rouge'] / n:.3f} | {computed:.1%} |"
        )
        verdicts.append((name, points))
    lines.append("")
    for name, points in verdicts:
        ok = abs(points) <= BAR_POINTS or points > 0
        lines.append(
            f"- {name}: {points:+.1f} points ({'within' if ok else 'OUTSIDE'} the "
            f"{BAR_POINTS:.0f}-point bar)"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", nargs="*", default=["1", "2"], help="e.g. 1 2 or 1,2 3")
    parser.add_argument("--per-slice", type=int, default=0, help="first N questions (0: all)")
    parser.add_argument("--no-bundled", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--recompute", type=int, default=16, help="passage_recompute_tokens")
    parser.add_argument("--share", type=float, default=0.1, help="passage_recompute_share")
    parser.add_argument("--layout", choices=("append", "prepend"), default="prepend")
    parser.add_argument(
        "--modes", nargs="+", choices=MODES, default=list(MODES), help="answer only these now"
    )
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks/results/kv_passages_quality.md"
    )
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    before = "/".join(f"{x:.1f}" for x in os.getloadavg())
    sets: dict[str, list[Question]] = {}
    if not args.no_bundled:
        sets["bundled (naive)"] = bundled_questions()
    for spec in args.slices:
        parts = [int(p) for p in spec.split(",")]
        questions = crud_questions(parts)
        sets[f"CRUD-RAG {slice_label(parts)} (best)"] = (
            questions[: args.per_slice] if args.per_slice else questions
        )
    rows = answer_all(sets, args.work, args)
    after = "/".join(f"{x:.1f}" for x in os.getloadavg())
    report = [
        "# Answer quality: passage KV reuse against full prefill",
        "",
        f"Local generator, greedy, up to {args.max_new_tokens} new tokens, batches of "
        f"{args.batch}, `{args.layout}` layout, passage_recompute_tokens {args.recompute}, "
        f"passage_recompute_share {args.share}; {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {before} at the start and {after} at the end. "
        f"Command: `python {' '.join(sys.argv)}`.",
        "",
        *table(sets, rows),
    ]
    text = "\n".join(report) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
