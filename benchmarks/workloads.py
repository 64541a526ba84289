"""Benchmark workloads: multi-call RAG (Iter-RetGen rounds and multi-turn chat) in either layout,
recording for every call how many prompt tokens were computed and how many a KV cache supplied.

The two layouts send the same passages; they differ only in where the new ones go. `prepend`
rebuilds each prompt with passages first and the question last, the way most RAG code does, so
a new round changes the prompt near its start. `append` keeps everything an earlier call saw in
place and adds the new passages (or the new turn) at the end, so a prefix-caching engine only
computes what is new. The workloads take any generator Runnable (Prompt → Answer with `usage`)
and any retriever Runnable (Query → list[Retrieved]), so the same code measures every engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.runnables import Runnable

from ragkit.eval.metrics import contains_reference
from ragkit.prompting import PromptAssembler
from ragkit.text import is_cjk
from ragkit.types import Answer, Layout, Prompt, Query, Retrieved

ITER_RETGEN = "iter-retgen"
CHAT = "chat"


class Question(Protocol):
    """What a workload needs from a question; `ragkit.eval.tasks.EvalItem` fits."""

    @property
    def id(self) -> str: ...

    @property
    def query(self) -> str: ...

    @property
    def references(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One generator call of a workload: a round of Iter-RetGen or a turn of a chat.

    `computed_prompt_tokens` is what the engine had to prefill; the rest came from its cache.
    `passages` counts every passage the prompt holds, `new_passages` those it shows first.
    """

    workload: str
    layout: Layout
    item_id: str
    round: int
    question: str
    prompt_tokens: int
    cached_prompt_tokens: int
    completion_tokens: int
    ttft_s: float
    total_s: float
    passages: int
    new_passages: int
    answer: str
    correct: bool
    prompt: Prompt = field(repr=False, compare=False)

    @property
    def computed_prompt_tokens(self) -> int:
        return self.prompt_tokens - self.cached_prompt_tokens


@dataclass(frozen=True, slots=True)
class RoundSummary:
    """Totals and means over the calls of one (workload, layout, round)."""

    workload: str
    layout: Layout
    round: int
    calls: int
    prompt_tokens: int
    cached_prompt_tokens: int
    computed_prompt_tokens: int
    completion_tokens: int
    mean_ttft_s: float
    mean_total_s: float
    accuracy: float


def _check(layout: str, batch_size: int) -> None:
    if layout not in ("prepend", "append"):
        raise ValueError(f"layout must be 'prepend' or 'append', got {layout!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")


def _assembler(template: PromptAssembler | None, layout: Layout) -> PromptAssembler:
    if template is None:
        return PromptAssembler(layout=layout)
    return template.model_copy(update={"layout": layout})


def _groups(values: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def _references(item: Question) -> tuple[str, ...]:
    return tuple(item.references) or (str(getattr(item, "reference", "")),)


def _record(
    workload: str,
    layout: Layout,
    item: Question,
    number: int,
    prompt: Prompt,
    answer: Answer,
    passages: int,
    new_passages: int,
) -> CallRecord:
    usage = answer.usage
    return CallRecord(
        workload=workload,
        layout=layout,
        item_id=item.id,
        round=number,
        question=item.query,
        prompt_tokens=usage.prompt_tokens,
        cached_prompt_tokens=usage.cached_prompt_tokens,
        completion_tokens=usage.completion_tokens,
        ttft_s=usage.time_to_first_token_s,
        total_s=usage.total_time_s,
        passages=passages,
        new_passages=new_passages,
        answer=answer.text,
        correct=contains_reference(answer.text, _references(item)),
        prompt=prompt,
    )


# ---------------------------------------------------------------- Iter-RetGen


@dataclass
class _Draft:
    """One question's passages so far: first-seen order for `append`; for `prepend`, ranked for
    the current round's query, as relevance-ordered RAG prompts are."""

    item: Question
    best: dict[str, Retrieved] = field(default_factory=dict)
    prompt: Prompt | None = None
    answer: str = ""

    def add(self, hits: Sequence[Retrieved]) -> int:
        fresh = 0
        for hit in hits:
            old = self.best.get(hit.chunk.id)
            if old is None:
                fresh += 1
                self.best[hit.chunk.id] = hit
            elif hit.score > old.score:
                self.best[hit.chunk.id] = hit  # dict keeps the first-seen position
        return fresh

    def ranked_for(self, hits: Sequence[Retrieved]) -> list[Retrieved]:
        """This round's hits in their rank order, then earlier passages by their best score.

        Scores from different queries are not comparable, so the current query's ranking leads;
        keeping the earlier passages means both layouts show the model the same set.
        """
        current = dict.fromkeys(hit.chunk.id for hit in hits)  # ordered, and a set to test
        earlier = [h for h in self.best.values() if h.chunk.id not in current]
        order = {chunk_id: i for i, chunk_id in enumerate(self.best)}
        earlier.sort(key=lambda h: (-h.score, order[h.chunk.id]))
        return [self.best[chunk_id] for chunk_id in current] + earlier


def iter_retgen(
    items: Sequence[Question],
    retriever: Runnable,
    generator: Runnable,
    *,
    layout: Layout = "append",
    rounds: int = 3,
    batch_size: int = 8,
    assembler: PromptAssembler | None = None,
) -> list[CallRecord]:
    """Run `rounds` of retrieve → generate per question; round t+1 searches with the question
    plus round t's answer, and its prompt holds every passage found so far.

    Questions go through in groups of `batch_size`: each round of a group is one retriever
    batch and one generator batch, so a batching engine sees them together, while a group's
    prompts stay few enough for a bounded prefix cache to keep them between rounds.
    """
    _check(layout, batch_size)
    if rounds <= 0:
        raise ValueError(f"rounds must be > 0, got {rounds}")
    shaper = _assembler(assembler, layout)
    records: list[CallRecord] = []
    for group in _groups(list(items), batch_size):
        drafts = [_Draft(item) for item in group]
        for number in range(1, rounds + 1):
            queries = [
                Query(f"{d.item.query}\n{d.answer}" if d.answer else d.item.query) for d in drafts
            ]
            found = retriever.batch(queries)
            fresh = []
            for draft, hits in zip(drafts, found, strict=True):
                fresh.append(draft.add(hits))
                if layout == "append" and draft.prompt is not None:
                    draft.prompt = shaper.extend(draft.prompt, hits)
                elif layout == "append":
                    draft.prompt = shaper.assemble(draft.item.query, hits)
                else:
                    draft.prompt = shaper.assemble(draft.item.query, draft.ranked_for(hits))
            answers = generator.batch([d.prompt for d in drafts])
            for draft, answer, new in zip(drafts, answers, fresh, strict=True):
                draft.answer = answer.text
                prompt = draft.prompt
                assert prompt is not None
                passages = len(prompt.segments)
                records.append(
                    _record(ITER_RETGEN, layout, draft.item, number, prompt, answer, passages, new)
                )
    return records


# ---------------------------------------------------------------- multi-turn chat


@dataclass
class _Conversation:
    turns: Sequence[Question]
    prompt: Prompt | None = None
    seen: dict[str, int] = field(default_factory=dict)  # chunk id → passage number
    history: list[tuple[str, str]] = field(default_factory=list)


def _labels(question: str) -> tuple[str, str]:
    return ("问题", "资料") if is_cjk(question) else ("Question", "Passages")


def _next_turn(
    shaper: PromptAssembler, conv: _Conversation, item: Question, hits: Sequence[Retrieved]
) -> tuple[Prompt, int]:
    """The prompt for one more turn and how many of its passages are new to the conversation."""
    fresh: list[Retrieved] = []
    for hit in hits:
        if hit.chunk.id not in conv.seen and all(f.chunk.id != hit.chunk.id for f in fresh):
            fresh.append(hit)
    if shaper.layout == "prepend":
        prompt = shaper.assemble(item.query, hits, history=conv.history)
    elif conv.prompt is None:
        prompt = shaper.assemble(item.query, fresh)
    else:
        # The earlier prompt and its answer stay as they were; the new turn follows them.
        previous, answer = conv.prompt, conv.history[-1][1]
        q_label, p_label = _labels(item.query)
        prefix = f"{previous.user_text} {answer}\n\n{q_label}: {item.query}\n\n{p_label}:\n"
        segments = shaper.segments(fresh, start=len(conv.seen) + 1)
        prompt = Prompt(
            previous.system, prefix, segments, previous.suffix, item.query, previous.layout
        )
    for number, hit in enumerate(fresh, start=len(conv.seen) + 1):
        conv.seen[hit.chunk.id] = number
    return prompt, len(fresh)


def chat(
    conversations: Sequence[Sequence[Question]],
    retriever: Runnable,
    generator: Runnable,
    *,
    layout: Layout = "append",
    batch_size: int = 8,
    assembler: PromptAssembler | None = None,
) -> list[CallRecord]:
    """Ask each conversation's questions in turn, each turn retrieving with its own question.

    `prepend` rebuilds every turn's prompt: instructions, the conversation so far as text, that
    turn's passages, then the question. `append` continues the previous prompt: its text and
    answer stay in place and the new question and the passages not shown before follow, so each
    prompt starts with the whole previous one. `CallRecord.round` is the turn number.
    """
    _check(layout, batch_size)
    shaper = _assembler(assembler, layout)
    records: list[CallRecord] = []
    for group in _groups(list(conversations), batch_size):
        convs = [_Conversation(turns) for turns in group]
        for number in range(1, max((len(c.turns) for c in convs), default=0) + 1):
            active = [c for c in convs if len(c.turns) >= number]
            items = [c.turns[number - 1] for c in active]
            found = retriever.batch([Query(item.query) for item in items])
            turns = [
                _next_turn(shaper, conv, item, hits)
                for conv, item, hits in zip(active, items, found, strict=True)
            ]
            answers = generator.batch([prompt for prompt, _ in turns])
            for conv, item, (prompt, new), answer in zip(
                active, items, turns, answers, strict=True
            ):
                conv.prompt = prompt
                conv.history += [("user", item.query), ("assistant", answer.text)]
                passages = len(conv.seen) if layout == "append" else len(prompt.segments)
                records.append(_record(CHAT, layout, item, number, prompt, answer, passages, new))
    return records


# ---------------------------------------------------------------- summaries


def summarize(records: Sequence[CallRecord]) -> list[RoundSummary]:
    """One summary per (workload, layout, round), in first-seen order."""
    grouped: dict[tuple[str, str, int], list[CallRecord]] = {}
    for r in records:
        grouped.setdefault((r.workload, r.layout, r.round), []).append(r)
    out = []
    for (workload, layout, number), rs in grouped.items():
        n = len(rs)
        out.append(
            RoundSummary(
                workload=workload,
                layout=layout,  # type: ignore[arg-type]
                round=number,
                calls=n,
                prompt_tokens=sum(r.prompt_tokens for r in rs),
                cached_prompt_tokens=sum(r.cached_prompt_tokens for r in rs),
                computed_prompt_tokens=sum(r.computed_prompt_tokens for r in rs),
                completion_tokens=sum(r.completion_tokens for r in rs),
                mean_ttft_s=sum(r.ttft_s for r in rs) / n,
                mean_total_s=sum(r.total_s for r in rs) / n,
                accuracy=sum(r.correct for r in rs) / n,
            )
        )
    return out
