"""Passage extraction by the generator: for each passage it is shown the numbered sentences and
the question and names the ones that help answer it (RETA-LLM's passage extraction, asked as a
choice of sentences rather than free rewriting, so the kept text is the source's own words and
its spans still point at the document).

Selection then follows `ExtractiveCompressor`: the picked sentences are kept within
`max_tokens`, ranked by their BM25 (or embedder) score; a passage where the model picks none, or
replies with no usable number, keeps its best-scoring sentence, so passage numbers never change.
All passages of a batch go to the generator as one batch.
"""

from __future__ import annotations

import re

from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import Field, model_validator

from ragkit.stages.compress import ExtractiveCompressor, Sentence
from ragkit.text import is_cjk
from ragkit.types import Prompt, Retrieved

PICK_EN = (
    "Question: {question}\n\nSentences:\n{sentences}\n\n"
    "Which sentences help answer the question? Reply with their numbers only, separated by "
    "commas (for example: 2, 5). Reply 0 if none does."
)
PICK_ZH = (
    "问题：{question}\n\n句子：\n{sentences}\n\n"
    "哪些句子有助于回答这个问题？只回答句子编号，用逗号分隔（例如：2, 5）。如果都没有，回答0。"
)
_NUMBER = re.compile(r"\d+")


class ModelCompressor(ExtractiveCompressor):
    """Keeps the sentences the generator picks as relevant to the question, within
    `max_tokens`; `template` may use `{question}` and `{sentences}`."""

    generator: Runnable
    template: str | None = None
    max_new_tokens: int = Field(24, gt=0)

    @model_validator(mode="after")
    def _check_template(self) -> ModelCompressor:
        if self.template is not None:
            try:
                self.template.format(question="q", sentences="s")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"the sentence-picking template may use {{question}} and {{sentences}}; "
                    f"got {self.template!r} ({exc})"
                ) from exc
        return self

    def prompt(self, question: str, sentences: list[str]) -> Prompt:
        template = self.template
        if template is None:
            template = PICK_ZH if is_cjk(question) else PICK_EN
        listed = "\n".join(f"{n}. {' '.join(s.split())}" for n, s in enumerate(sentences, 1))
        return Prompt.plain(template.format(question=question, sentences=listed))

    def _allowed(
        self,
        questions: list[str],
        lists: list[list[Retrieved]],
        found: list[list[list[Sentence]]],
        config: RunnableConfig | None,
    ) -> list[list[set[int]] | None]:
        allowed: list[list[set[int]] | None] = []
        asks: list[tuple[list[set[int]], int, int]] = []  # (picks, passage, sentence count)
        prompts: list[Prompt] = []
        for question, hits, per in zip(questions, lists, found, strict=True):
            picks: list[set[int]] = [set(range(len(sents))) for sents in per]
            for p, (hit, sents) in enumerate(zip(hits, per, strict=True)):
                if len(sents) > 1:
                    texts = [hit.chunk.text[a:b] for a, b in sents]
                    prompts.append(self.prompt(question, texts))
                    asks.append((picks, p, len(sents)))
            allowed.append(picks)
        if prompts:
            answers = self.generator.batch(prompts, config, max_new_tokens=self.max_new_tokens)
            for (picks, p, n), answer in zip(asks, answers, strict=True):
                picks[p] = parse_picks(answer.text, n)
        return allowed


def parse_picks(reply: str, count: int) -> set[int]:
    """Sentence indices (from 0) named in a reply such as "2, 5"; numbers outside 1..count,
    and "0" (none), name nothing."""
    return {int(m) - 1 for m in _NUMBER.findall(reply) if 1 <= int(m) <= count}
