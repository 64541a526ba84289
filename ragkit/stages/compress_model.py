"""Passage extraction by the generator (RETA-LLM's passage extraction module): for each passage
the generator is asked to copy, word for word, what in it answers the question; the passage's
sentences that hold most of the copied words are kept. Copying, not rewriting, keeps the source's
own words, so the kept spans still point at the document; asking for a copy rather than for
sentence numbers suits a small model, which tends to repeat an example's numbers or a number from
the text instead of counting sentences.

Selection then follows `ExtractiveCompressor`: the picked sentences are kept within
`max_tokens`, ranked by their BM25 (or embedder) score; a passage where the model finds nothing,
or copies words no sentence holds, keeps its best-scoring sentence, so passage numbers never
change. All passages of a batch go to the generator as one batch.
"""

from __future__ import annotations

import re

from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import Field, model_validator

from ragkit.stages.compress import ExtractiveCompressor, Sentence
from ragkit.text import is_cjk, lexical_terms
from ragkit.types import Prompt, Retrieved

PICK_EN = (
    "Passage:\n{passage}\n\nQuestion: {question}\n\nCopy the sentences from the passage that "
    "answer the question, word for word. If no sentence does, reply: none."
)
PICK_ZH = (
    "资料：\n{passage}\n\n问题：{question}\n\n"
    "请从资料中原样摘录能回答问题的句子。如果没有，回答：无。"
)
# A sentence is picked when it holds at least this share of the copied reply's terms.
MIN_SHARE = 0.5
_NONE = re.compile(r"^\W*(none|no\b|无|没有)", re.IGNORECASE)


class ModelCompressor(ExtractiveCompressor):
    """Keeps the sentences the generator copies as answering the question, within
    `max_tokens`; `template` may use `{question}` and `{passage}`."""

    generator: Runnable
    template: str | None = None
    max_new_tokens: int = Field(64, gt=0)

    @model_validator(mode="after")
    def _check_template(self) -> ModelCompressor:
        if self.template is not None:
            try:
                self.template.format(question="q", passage="p")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"the sentence-picking template may use {{question}} and {{passage}}; "
                    f"got {self.template!r} ({exc})"
                ) from exc
        return self

    def prompt(self, question: str, passage: str) -> Prompt:
        template = self.template
        if template is None:
            template = PICK_ZH if is_cjk(question) else PICK_EN
        return Prompt.plain(template.format(question=question, passage=passage.strip()))

    def _allowed(
        self,
        questions: list[str],
        lists: list[list[Retrieved]],
        found: list[list[list[Sentence]]],
        config: RunnableConfig | None,
    ) -> list[list[set[int]] | None]:
        allowed: list[list[set[int]] | None] = []
        asks: list[tuple[list[set[int]], int, list[str]]] = []  # (picks, passage, sentences)
        prompts: list[Prompt] = []
        for question, hits, per in zip(questions, lists, found, strict=True):
            picks: list[set[int]] = [set(range(len(sents))) for sents in per]
            for p, (hit, sents) in enumerate(zip(hits, per, strict=True)):
                if len(sents) > 1:
                    prompts.append(self.prompt(question, hit.chunk.text))
                    asks.append((picks, p, [hit.chunk.text[a:b] for a, b in sents]))
            allowed.append(picks)
        if prompts:
            answers = self.generator.batch(prompts, config, max_new_tokens=self.max_new_tokens)
            for (picks, p, sentences), answer in zip(asks, answers, strict=True):
                picks[p] = copied_sentences(answer.text, sentences)
        return allowed


def copied_sentences(reply: str, sentences: list[str]) -> set[int]:
    """Indices of the sentences that hold at least `MIN_SHARE` of the reply's terms (words and
    Chinese character pairs); none for a reply that declines or copies nothing they hold."""
    if not reply.strip() or _NONE.match(reply.strip()):
        return set()
    wanted = set(lexical_terms(reply, "words+bigrams"))
    if not wanted:
        return set()
    picked = set()
    for i, sentence in enumerate(sentences):
        held = wanted & set(lexical_terms(sentence, "words+bigrams"))
        if len(held) >= MIN_SHARE * len(wanted):
            picked.add(i)
    return picked
