"""Prompt assembly: turns a question and retrieved passages into a `Prompt`, in a layout that
either puts passages first (`prepend`) or keeps a stable prefix and appends them (`append`), and
maps `[n]` markers in an answer back to the passages they cite."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig, RunnableSerializable
from pydantic import ConfigDict, field_validator

from ragkit.text import is_cjk
from ragkit.types import Citation, Layout, Prompt, Retrieved, Segment

SYSTEM_EN = "You are a careful assistant. Answer only from the given passages."
SYSTEM_ZH = "你是一个严谨的助手，只根据给定的资料回答问题。"

# A worked citation example keeps small models from answering with a bare "[1]".
INSTRUCTION_EN = (
    "Answer the question in one or two sentences using only the numbered passages. After each "
    "fact, cite the passage it comes from in brackets, for example: The bridge opened in 1901 "
    "[2]. If the passages do not contain the answer, say that you do not know."
)
INSTRUCTION_ZH = (
    "请只根据编号资料，用一两句话回答问题，并在每个事实后用方括号标注所依据的资料编号，"
    "例如：大桥于1901年通车[2]。如果资料中没有答案，请回答不知道。"
)

PASSAGE_TEMPLATE = "[{number}] ({name})\n{text}\n\n"

_CITATION = re.compile(r"\[(\d+(?:\s*[,，、]\s*\d+)*)\]")


class PromptAssembler(RunnableSerializable[dict[str, Any], Prompt]):
    """Builds prompts from templates; the input is `{"question", "retrieved", "history"?,
    "instruction"?}` so it composes after a retriever in a runnable map.

    Passages render deterministically (the same chunk gives the same text), which is what lets a
    generator reuse the KV cache of a prompt whose passages it has seen before; each segment
    also marks where the part that does not depend on its number begins, so a generator can
    reuse a passage's KV at whatever rank it comes back.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    layout: Layout = "append"
    system: str | None = None
    instruction: str | None = None
    passage_template: str = PASSAGE_TEMPLATE
    max_passage_chars: int = 2000
    # `stable` numbers passages in document order (document id, then position) instead of
    # rank: the same passages then always render as the same text, whatever their scores.
    passage_order: Literal["rank", "stable"] = "rank"

    @field_validator("layout")
    @classmethod
    def _known_layout(cls, value: str) -> str:
        if value not in ("prepend", "append"):
            raise ValueError(f"layout must be 'prepend' or 'append', got {value!r}")
        return value

    @field_validator("passage_template")
    @classmethod
    def _template_fields(cls, value: str) -> str:
        return check_passage_template(value)

    def invoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Prompt:
        return self._call_with_config(self._assemble_input, input, config)

    def _assemble_input(self, input: dict[str, Any]) -> Prompt:
        return self.assemble(
            input["question"],
            input.get("retrieved", ()),
            history=input.get("history", ()),
            task_prompt=input.get("task_prompt"),
            cue=input.get("cue"),
        )

    def assemble(
        self,
        question: str,
        retrieved: Sequence[Retrieved],
        *,
        history: Sequence[tuple[str, str]] = (),
        task_prompt: str | None = None,
        cue: str | None = None,
    ) -> Prompt:
        """`task_prompt`, when given, is the whole text before the passages (it already holds
        the task's input, as evaluation tasks do), and `cue` the text after them."""
        chinese = is_cjk(question)
        instruction = self.instruction
        if instruction is None:
            instruction = INSTRUCTION_ZH if chinese else INSTRUCTION_EN
        system = self.system if self.system is not None else (SYSTEM_ZH if chinese else SYSTEM_EN)
        segments = self.segments(retrieved)
        conversation = _render_history(history, chinese)
        q_label, p_label, a_label = (
            ("问题", "资料", "回答") if chinese else ("Question", "Passages", "Answer")
        )
        answer_cue = cue if cue is not None else f"{a_label}:"
        if task_prompt is not None:
            prefix, suffix = conversation + task_prompt, answer_cue
        elif self.layout == "append":
            prefix = f"{instruction}\n\n{conversation}{q_label}: {question}\n\n{p_label}:\n"
            suffix = answer_cue
        else:
            prefix = f"{instruction}\n\n{conversation}{p_label}:\n"
            suffix = f"{q_label}: {question}\n{answer_cue}"
        return Prompt(system, prefix, segments, suffix, question, self.layout)

    def passage_prompt(self, hit: Retrieved) -> Prompt:
        """A prompt holding one passage, framed as a question in the passage's language would
        frame it (the system message follows the language), for computing its KV ahead of
        time; not for generating from."""
        return self.assemble(hit.chunk.text, [hit])

    def extend(self, prompt: Prompt, retrieved: Sequence[Retrieved]) -> Prompt:
        """Add newly found passages after the ones already in `prompt`, keeping their numbers.

        Earlier passages stay in place so the new prompt shares the old one's token prefix up to
        its last passage; passages already present are not repeated.
        """
        seen = {s.chunk_id for s in prompt.segments}
        fresh = [r for r in retrieved if r.chunk.id not in seen]
        added = self.segments(fresh, start=len(prompt.segments) + 1)
        return Prompt(
            prompt.system,
            prompt.prefix,
            prompt.segments + added,
            prompt.suffix,
            prompt.question,
            prompt.layout,
        )

    def segments(self, retrieved: Sequence[Retrieved], start: int = 1) -> tuple[Segment, ...]:
        out = []
        hits = _unique(retrieved)
        if self.passage_order == "stable":
            hits.sort(key=lambda h: (h.chunk.doc_id, h.chunk.start, h.chunk.id))
        for number, hit in enumerate(hits, start=start):
            chunk = hit.chunk
            fields = {
                "name": Path(chunk.source.split("#")[0]).name,
                "source": chunk.source,
                "text": chunk.text.strip()[: self.max_passage_chars],
            }
            rendered = self.passage_template.format(number=number, **fields)
            # n and n + 1 differ in their last digit, so the shared tail starts after the number.
            other = self.passage_template.format(number=number + 1, **fields)
            body_start = len(rendered) - _common_suffix(rendered, other)
            out.append(Segment(number, chunk.id, chunk.doc_id, chunk.source, rendered, body_start))
        return tuple(out)


def check_passage_template(value: str) -> str:
    """`value` if it formats with the fields a passage offers, else a ValueError naming them."""
    try:
        value.format(number=1, name="n", source="s", text="t")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"passage_template may use {{number}}, {{name}}, {{source}}, {{text}}; got {exc}"
        ) from exc
    return value


def cite(answer_text: str, segments: Sequence[Segment]) -> tuple[Citation, ...]:
    """Citations for the `[n]` markers in an answer, in order of first mention; unknown numbers
    (a model citing a passage it was not given) are dropped."""
    by_number = {s.number: s for s in segments}
    found: dict[int, Citation] = {}
    for match in _CITATION.finditer(answer_text):
        for raw in re.split(r"[,，、]", match.group(1)):
            number = int(raw.strip())
            seg = by_number.get(number)
            if seg is not None and number not in found:
                found[number] = Citation(number, seg.chunk_id, seg.doc_id, seg.source)
    return tuple(found.values())


def _common_suffix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def _unique(retrieved: Sequence[Retrieved]) -> list[Retrieved]:
    seen: set[str] = set()
    out = []
    for hit in retrieved:
        if hit.chunk.id not in seen:
            seen.add(hit.chunk.id)
            out.append(hit)
    return out


def _render_history(history: Sequence[tuple[str, str]], chinese: bool) -> str:
    if not history:
        return ""
    label = "对话记录" if chinese else "Conversation so far"
    lines = "".join(f"{role}: {content}\n" for role, content in history)
    return f"{label}:\n{lines}\n"
