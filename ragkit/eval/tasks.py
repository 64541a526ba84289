"""The four CRUD-RAG task kinds: one item type, per-kind constructors, and per-kind prompts.

Every evaluation item, whatever file it came from, becomes an `EvalItem`, so a pipeline runs a
whole suite as one batch and metrics only need `reference`/`references` and, for QuestEval,
`questions`/`answers`. A task kind decides three things: what is retrieved with (`query`), what
the generator is told before the passages (`instruction`), and what cues the answer (`cue`).
Prompts come in English and Chinese and are chosen from the item's own text, so the same suite
code serves the bundled English suite and CRUD-RAG.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ragkit.text import is_cjk

TaskKind = Literal["create", "read", "update", "delete"]
Language = Literal["en", "zh"]
TASK_KINDS: tuple[TaskKind, ...] = ("create", "read", "update", "delete")

# Modelled on CRUD-RAG's task prompts: continue the news, answer from the documents, correct the
# hallucinated continuation, summarise the event. Placeholders are filled from `item.inputs`.
_INSTRUCTIONS: dict[str, dict[str, str]] = {
    "create": {
        "en": (
            "You are a news writer. Continue the news story below. The continuation must follow "
            "on naturally from the beginning and agree with the facts in the documents. Write "
            "only the continuation, in a few sentences.\n\n"
            "Beginning: {beginning}\n\nDocuments:\n"
        ),
        "zh": (
            "你是一名新闻编辑。请根据下面的相关文档续写这则新闻。续写内容要与开头自然衔接，"
            "并与文档中的事实一致。只输出续写的部分，写几句话即可。\n\n"
            "新闻开头：{beginning}\n\n相关文档：\n"
        ),
    },
    "read": {
        "en": (
            "Answer the question using only the documents below. Keep the answer short. If the "
            "documents do not contain the answer, say that it cannot be inferred.\n\n"
            "Question: {question}\n\nDocuments:\n"
        ),
        "zh": (
            "请仅根据下面的文档回答问题，回答要简洁。如果文档中没有答案，请回答“无法推断”。\n\n"
            "问题：{question}\n\n文档：\n"
        ),
    },
    "update": {
        "en": (
            "The continuation of the news below contains false statements. Using the documents, "
            "rewrite the continuation so that every fact agrees with them, changing as little "
            "as possible. Write only the corrected continuation.\n\n"
            "Beginning: {beginning}\n\nContinuation to correct: {hallucinated}\n\nDocuments:\n"
        ),
        "zh": (
            "下面这则新闻的续写中有与事实不符的内容。请根据相关文档改正续写，使其中的事实与文档"
            "一致，尽量少做改动。只输出改正后的续写。\n\n"
            "新闻开头：{beginning}\n\n需要改正的续写：{hallucinated}\n\n相关文档：\n"
        ),
    },
    "delete": {
        "en": (
            "Summarise the event below using the documents. Write one concise paragraph that "
            "keeps the key facts (names, dates, numbers) from every relevant document.\n\n"
            "Event: {event}\n\nDocuments:\n"
        ),
        "zh": (
            "请根据下面的相关文档，对该事件写一段简洁的摘要，保留各篇文档中的关键事实（人名、"
            "日期、数字）。\n\n事件：{event}\n\n相关文档：\n"
        ),
    },
}

_CUES: dict[str, dict[str, str]] = {
    "create": {"en": "\nContinuation:", "zh": "\n续写："},
    "read": {"en": "\nAnswer:", "zh": "\n答案："},
    "update": {"en": "\nCorrected continuation:", "zh": "\n改正后的续写："},
    "delete": {"en": "\nSummary:", "zh": "\n摘要："},
}


@dataclass(frozen=True, slots=True)
class EvalItem:
    """One evaluation task with everything a pipeline run and its metrics need.

    `reference` is the text generation is scored against; `references` holds every acceptable
    variant (the reference first) for contains/recall metrics. `gold_sources` name the documents
    that support the reference (file names for the bundled suite, `file#line` for CRUD-RAG
    news), so retrieval can be scored. `contexts` carries reference passages when a data set
    ships them instead of source names. `questions`/`answers` are QuestEval pairs about the
    reference, or None when the data set has none.
    """

    id: str
    task: TaskKind
    query: str
    inputs: Mapping[str, str]
    reference: str
    references: tuple[str, ...] = ()
    gold_sources: tuple[str, ...] = ()
    contexts: tuple[str, ...] = ()
    questions: tuple[str, ...] | None = None
    answers: tuple[str, ...] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASK_KINDS:
            raise ValueError(
                f"item {self.id!r}: task must be one of {TASK_KINDS}, got {self.task!r}"
            )
        if not self.query.strip():
            raise ValueError(f"item {self.id!r}: query is empty")
        if (self.questions is None) != (self.answers is None):
            raise ValueError(f"item {self.id!r}: questions and answers must both be set or unset")
        if self.questions is not None and len(self.questions) != len(self.answers or ()):
            raise ValueError(
                f"item {self.id!r}: {len(self.questions)} questions but "
                f"{len(self.answers or ())} answers"
            )

    @property
    def language(self) -> Language:
        """Chinese when the retrieval text has CJK characters, so prompts match the data."""
        return "zh" if is_cjk(self.query) else "en"


def _variants(reference: str, extra: Iterable[str]) -> tuple[str, ...]:
    out = [reference]
    for text in extra:
        if text and text not in out:
            out.append(text)
    return tuple(out)


def _pairs(
    questions: Iterable[str] | None, answers: Iterable[str] | None
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    if questions is None and answers is None:
        return None, None
    return tuple(questions or ()), tuple(answers or ())


def read_item(
    id: str,
    question: str,
    answer: str,
    *,
    answers: Iterable[str] = (),
    gold_sources: Iterable[str] = (),
    contexts: Iterable[str] = (),
    quest_questions: Iterable[str] | None = None,
    quest_answers: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> EvalItem:
    """A question answered from the corpus; `answers` adds accepted variants of `answer`."""
    qq, qa = _pairs(quest_questions, quest_answers)
    return EvalItem(
        id=id,
        task="read",
        query=question,
        inputs={"question": question},
        reference=answer,
        references=_variants(answer, answers),
        gold_sources=tuple(gold_sources),
        contexts=tuple(contexts),
        questions=qq,
        answers=qa,
        metadata=dict(metadata or {}),
    )


def create_item(
    id: str,
    beginning: str,
    continuing: str,
    *,
    gold_sources: Iterable[str] = (),
    quest_questions: Iterable[str] | None = None,
    quest_answers: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> EvalItem:
    """A news opening to continue; the reference is the real continuation."""
    qq, qa = _pairs(quest_questions, quest_answers)
    return EvalItem(
        id=id,
        task="create",
        query=beginning,
        inputs={"beginning": beginning},
        reference=continuing,
        references=(continuing,),
        gold_sources=tuple(gold_sources),
        questions=qq,
        answers=qa,
        metadata=dict(metadata or {}),
    )


def update_item(
    id: str,
    beginning: str,
    hallucinated: str,
    corrected: str,
    *,
    gold_sources: Iterable[str] = (),
    quest_questions: Iterable[str] | None = None,
    quest_answers: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> EvalItem:
    """A continuation with false facts to correct; retrieval uses the opening, not the errors."""
    qq, qa = _pairs(quest_questions, quest_answers)
    return EvalItem(
        id=id,
        task="update",
        query=beginning,
        inputs={"beginning": beginning, "hallucinated": hallucinated},
        reference=corrected,
        references=(corrected,),
        gold_sources=tuple(gold_sources),
        questions=qq,
        answers=qa,
        metadata=dict(metadata or {}),
    )


def delete_item(
    id: str,
    event: str,
    summary: str,
    *,
    gold_sources: Iterable[str] = (),
    quest_questions: Iterable[str] | None = None,
    quest_answers: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> EvalItem:
    """An event to summarise across several documents; the reference is a written summary."""
    qq, qa = _pairs(quest_questions, quest_answers)
    return EvalItem(
        id=id,
        task="delete",
        query=event,
        inputs={"event": event},
        reference=summary,
        references=(summary,),
        gold_sources=tuple(gold_sources),
        questions=qq,
        answers=qa,
        metadata=dict(metadata or {}),
    )


def query(item: EvalItem) -> str:
    """The text to retrieve with: the question, the news opening, or the event.

    Update items retrieve with the opening only, so the false facts do not steer retrieval.
    """
    return item.query


def instruction(item: EvalItem, language: Language | None = None) -> str:
    """The task text a pipeline puts before the retrieved passages (ends with the passage header).

    `language` overrides the automatic choice, e.g. to ask English questions about Chinese text.
    """
    if language is None:
        language = item.language
    template = _INSTRUCTIONS[item.task][language]
    return template.format_map(_Inputs(item))


def cue(item: EvalItem, language: Language | None = None) -> str:
    """The short text after the passages that tells the generator what to write next."""
    if language is None:
        language = item.language
    return _CUES[item.task][language]


class _Inputs(dict):
    """Template fields from an item's inputs; a missing field names the item and the field."""

    def __init__(self, item: EvalItem) -> None:
        super().__init__(item.inputs)
        self._item = item

    def __missing__(self, key: str) -> str:
        raise KeyError(f"item {self._item.id!r} ({self._item.task}) has no input {key!r}")
