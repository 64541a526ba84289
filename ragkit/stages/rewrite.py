"""Query rewriting: turn a question into the search queries a retriever should run.

Three strategies from the literature share one shape (a template, one batched generator call,
a parser): Rewrite-Retrieve-Read (the model writes a search query), multi-query (several
phrasings, fused by the pipeline with reciprocal rank fusion) and HyDE (a hypothetical answer
passage, which looks more like the passages being searched than the question does). The
original question always comes first in the output, so a bad rewrite can add noise to the
fused ranking but never loses the question itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import ConfigDict, Field, model_validator

from ragkit.runnable import BatchedRunnable
from ragkit.text import is_cjk
from ragkit.types import Prompt, Query

RewriteMode = Literal["rewrite", "multi-query", "hyde"]

TEMPLATES_EN: dict[str, str] = {
    "rewrite": (
        "Rewrite the question below as one short search-engine query that would find the "
        "passages answering it. Keep names, numbers and dates. Reply with the query only.\n\n"
        "Question: {question}\nQuery:"
    ),
    "multi-query": (
        "Rewrite the question below as one short search-engine query. {angle} Keep names, "
        "numbers and dates. Reply with the query only.\n\nQuestion: {question}\nQuery:"
    ),
    "hyde": (
        "Write a short passage of two or three sentences that answers the question below, "
        "in the style of a news report. Reply with the passage only.\n\n"
        "Question: {question}\nPassage:"
    ),
}
TEMPLATES_ZH: dict[str, str] = {
    "rewrite": (
        "请把下面的问题改写成一个简短的搜索查询，用来检索能回答这个问题的资料。"
        "保留其中的人名、地名、数字和日期。只输出查询本身。\n\n问题：{question}\n查询："
    ),
    "multi-query": (
        "请把下面的问题改写成一个简短的搜索查询。{angle}保留其中的人名、地名、数字和日期。"
        "只输出查询本身。\n\n问题：{question}\n查询："
    ),
    "hyde": (
        "请用新闻报道的写法，写一段两三句话的短文回答下面的问题。只输出这段短文。\n\n"
        "问题：{question}\n短文："
    ),
}
# Greedy decoding gives one reply per prompt, so multi-query asks from different angles.
ANGLES_EN = (
    "Use only the key words.",
    "Use different words with the same meaning.",
    "Describe what a passage answering it would say.",
    "Make it more general.",
    "Make it more specific.",
)
ANGLES_ZH = (
    "只保留关键词。",
    "换一种说法，意思不变。",
    "写出能回答它的资料会包含的内容。",
    "写得更概括一些。",
    "写得更具体一些。",
)
STANDALONE_EN = (
    "Rewrite the last question so that it can be understood without the conversation, "
    "replacing pronouns with the names they refer to. Reply with the question only.\n\n"
    "Conversation:\n{history}\nLast question: {question}\nStandalone question:"
)
STANDALONE_ZH = (
    "请把最后一个问题改写成不依赖上文也能看懂的完整问题，把代词换成它所指的名称。"
    "只输出改写后的问题。\n\n对话记录：\n{history}\n最后的问题：{question}\n完整问题："
)

_LABEL = re.compile(
    r"^\s*(?:[-*•]+|\d+\s*[.)、:：]|(?:search\s+)?(?:query|queries|passage|question|"
    r"standalone question)\s*\d*\s*[:：]|(?:搜索)?查询\s*\d*\s*[:：]|短文[:：]|完整问题[:：])\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'“”‘’「」『』`"


def _check_template(template: str | None, fields: dict[str, Any], what: str) -> None:
    """Fail at construction, naming the template, when it uses an unknown or no `{question}`."""
    if template is None:
        return
    if "{question}" not in template:
        raise ValueError(f"{what} must contain {{question}}, got {template!r}")
    try:
        template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        allowed = ", ".join(f"{{{k}}}" for k in fields)
        raise ValueError(f"{what} may use {allowed}; got {template!r} ({exc})") from exc


def _clean(line: str) -> str:
    """A generated line without list markers, labels and surrounding quotes."""
    line = line.strip()
    for _ in range(2):
        line = _LABEL.sub("", line).strip().strip(_QUOTES).strip()
    return line


def _as_query(value: Query | str) -> Query:
    return value if isinstance(value, Query) else Query(str(value))


def _unique(texts: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for text in texts:
        key = " ".join(text.lower().split())
        if key and key not in seen:
            seen.add(key)
            out.append(text)
    return out


class StandaloneQuestion(BatchedRunnable[Query | str, list[str]]):
    """Makes a follow-up question self-contained from the conversation history.

    As a rewriter it returns `[question, standalone question]`, so a chat pipeline can search
    with the resolved question even when no other rewriting is configured. Queries without
    history cost no generator call.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    generator: Runnable
    template: str | None = None
    max_new_tokens: int = Field(64, gt=0)

    @model_validator(mode="after")
    def _check(self) -> StandaloneQuestion:
        _check_template(self.template, {"question": "q", "history": "h"}, "the standalone template")
        return self

    def _run_batch(
        self, inputs: list[Query | str], config: RunnableConfig | list[RunnableConfig] | None = None
    ) -> list[list[str]]:
        queries = [_as_query(x) for x in inputs]
        resolved = self.resolve(queries, _first(config))
        return [_unique([q.question, r]) for q, r in zip(queries, resolved, strict=True)]

    def resolve(self, queries: Sequence[Query], config: RunnableConfig | None = None) -> list[str]:
        """The self-contained form of each question; one generator batch for those with history."""
        out = [q.question for q in queries]
        todo = [i for i, q in enumerate(queries) if q.history]
        if not todo:
            return out
        prompts = [self._prompt(queries[i]) for i in todo]
        answers = self.generator.batch(prompts, config, max_new_tokens=self.max_new_tokens)
        for i, answer in zip(todo, answers, strict=True):
            lines = [_clean(x) for x in answer.text.splitlines()]
            text = next((x for x in lines if x), "")
            if text:
                out[i] = text
        return out

    def _prompt(self, query: Query) -> Prompt:
        template = self.template
        if template is None:
            template = STANDALONE_ZH if is_cjk(query.question) else STANDALONE_EN
        history = "".join(f"{role}: {content}\n" for role, content in query.history)
        return Prompt.plain(template.format(question=query.question, history=history))


class QueryRewriter(BatchedRunnable[Query | str, list[str]]):
    """Query → search queries, the original question first, via one generator batch.

    `mode` picks the template: `rewrite` asks for one search query, `multi-query` asks `n`
    prompts from different angles (greedy decoding would repeat one prompt's reply), `hyde`
    for one hypothetical passage; all prompts of a batch go to the generator as one batch.
    A `template` (with `{question}`, and optionally `{n}` or, for multi-query, `{angle}`)
    replaces both languages' default; a multi-query template without `{angle}` is asked once
    and its reply read as up to `n` queries, one per line;
    otherwise the Chinese template is used for questions containing CJK text. Questions with
    conversation history are first made standalone (one more batched call), and the rewrite
    is written for the standalone form.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    generator: Runnable
    mode: RewriteMode = "rewrite"
    n: int = Field(3, gt=0)
    template: str | None = None
    max_new_tokens: int = Field(96, gt=0)
    standalone_template: str | None = None

    @model_validator(mode="after")
    def _check(self) -> QueryRewriter:
        if self.mode not in TEMPLATES_EN:
            raise ValueError(f"mode must be one of {sorted(TEMPLATES_EN)}, got {self.mode!r}")
        _check_template(
            self.template, {"question": "q", "n": 3, "angle": ""}, "the rewrite template"
        )
        if self.mode == "multi-query" and self.template is None and self.n > len(ANGLES_EN):
            raise ValueError(
                f"n must be <= {len(ANGLES_EN)} with the built-in multi-query templates (one "
                f"per angle), got {self.n}; give a template with {{n}} to ask for more"
            )
        _check_template(
            self.standalone_template, {"question": "q", "history": "h"}, "the standalone template"
        )
        return self

    def _run_batch(
        self, inputs: list[Query | str], config: RunnableConfig | list[RunnableConfig] | None = None
    ) -> list[list[str]]:
        child = _first(config)
        queries = [_as_query(x) for x in inputs]
        standalone = StandaloneQuestion(
            generator=self.generator, template=self.standalone_template
        ).resolve(queries, child)
        texts = [self.prompt_texts(s) for s in standalone]
        flat = [Prompt.plain(t) for group in texts for t in group]
        answers = iter(self.generator.batch(flat, child, max_new_tokens=self.max_new_tokens))
        out = []
        for query, question, group in zip(queries, standalone, texts, strict=True):
            replies = [next(answers).text for _ in group]
            found = [q for reply in replies for q in self.parse(reply, len(group) == 1)]
            out.append(_unique([query.question, question, *found]))
        return out

    def prompt_texts(self, question: str) -> list[str]:
        """The prompts for one question: one per angle for multi-query, else one."""
        chinese = is_cjk(question)
        template = self.template
        if template is None:
            template = (TEMPLATES_ZH if chinese else TEMPLATES_EN)[self.mode]
        if self.mode != "multi-query" or "{angle}" not in template:
            return [template.format(question=question, n=self.n, angle="")]
        angles = (ANGLES_ZH if chinese else ANGLES_EN)[: self.n]
        return [template.format(question=question, n=self.n, angle=a) for a in angles]

    def parse(self, text: str, several: bool = True) -> list[str]:
        """The search queries in one generated reply: a passage for HyDE, else lines; a
        multi-query reply to a single prompt may hold up to `n` queries, one per line."""
        if self.mode == "hyde":
            passage = " ".join(_clean(x) for x in text.splitlines() if _clean(x))
            return [passage] if passage else []
        lines = [_clean(x) for x in text.splitlines()]
        lines = [x for x in lines if x]
        return lines[: self.n if self.mode == "multi-query" and several else 1]


def _first(config: RunnableConfig | list[RunnableConfig] | None) -> RunnableConfig | None:
    """The child config for a batched model call (`_batch_with_config` passes one per input)."""
    if isinstance(config, list):
        return config[0] if config else None
    return config
