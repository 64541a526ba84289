"""RAGQuestEval (CRUD-RAG's metric): how many of the reference's key facts a generated text
lets a reader recover, judged by answering questions about the reference from each text.

Each item is scored twice from the same answers: CRUD-RAG's way (`crud_questeval`: F1 over the
questions the output answered) and ragkit's `quest_f1_incl_unanswered` (F1 over every question
the reference answers, an unanswered one scoring 0, answers compared after SQuAD-style
normalisation)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ragkit.eval.cloze import cloze_questions
from ragkit.eval.metrics import UNANSWERABLE, crud_questeval, token_f1
from ragkit.text import is_cjk
from ragkit.types import Prompt

UNANSWERABLE_MARKERS = ("无法推断", "cannot infer")

_PROMPTS = {
    "zh": {
        "answer_system": "你是一个严谨的阅读理解助手。",
        "answer": (
            "请只根据下面的文本回答问题。答案要尽量简短，只给出一个词或短语，不要解释。"
            "如果文本中找不到答案，只回答“无法推断”。\n\n文本：{context}\n\n"
        ),
        "question": "问题：{question}\n答案：",
        "generate": (
            "阅读下面的文本，提出最多{n}个事实性问题，每个问题的答案都是文本中的一个短语"
            "（人名、地点、时间、数字或事件）。每行写一个问题，不要写答案。\n\n文本：{text}\n\n问题："
        ),
    },
    "en": {
        "answer_system": "You are a careful reading-comprehension assistant.",
        "answer": (
            "Answer the question using only the text below. Reply with a short phrase, no "
            'explanation. If the text does not contain the answer, reply exactly "cannot infer".'
            "\n\nText: {context}\n\n"
        ),
        "question": "Question: {question}\nAnswer:",
        "generate": (
            "Read the text below and write at most {n} factual questions, each answered by a "
            "short phrase from the text (a name, place, time, number or event). Write one "
            "question per line and no answers.\n\nText: {text}\n\nQuestions:"
        ),
    },
}

_WORDS = re.compile(r"\w", re.UNICODE)  # a question has words, not only symbols
_LIST_MARK = re.compile(
    r"^\s*(?:[-*•]|\(?\d+[.)、:：．]|[（(]?\d+[）)]|q\d*[.:：]|问题\s*\d*[:：])\s*", re.I
)


@dataclass(frozen=True, slots=True)
class QuestEvalResult:
    """One item's scores with the questions and both answer lists, to show why it scored so."""

    crud_f1: float
    crud_recall: float
    f1_incl_unanswered: float
    n_questions: int
    questions: tuple[str, ...]
    pred_answers: tuple[str, ...]
    ref_answers: tuple[str, ...]

    def scores(self) -> dict[str, float]:
        """CRUD-RAG's two scores, NaN when there was no question at all (CRUD-RAG leaves such
        items out of its average), and ragkit's F1 over every answerable question."""
        return {
            "crud_quest_f1": self.crud_f1,
            "crud_quest_recall": self.crud_recall,
            "quest_f1_incl_unanswered": self.f1_incl_unanswered,
        }


def is_unanswerable(answer: str) -> bool:
    """An answer counts as missing when it is empty or says the text cannot answer."""
    text = answer.strip().lower()
    return not text or any(marker in text for marker in UNANSWERABLE_MARKERS)


_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def judged_answer(answer: str, read: str | None = None) -> str:
    """A judge's answer as CRUD-RAG's scoring expects it: stripped, and exactly "无法推断" when
    it says the text cannot answer (CRUD-RAG compares that string exactly; a small judge adds
    punctuation or words around it). With `read` (the text the judge answered from) an answer
    that is not a span of it, ignoring case, spaces and punctuation, also counts as none: a
    small judge fills every blank with something rather than say the text has no answer."""
    if is_unanswerable(answer):
        return UNANSWERABLE
    if read is not None:
        span = _NOT_WORD.sub("", answer.lower())
        if not span or span not in _NOT_WORD.sub("", read.lower()):
            return UNANSWERABLE
    return answer.strip()


def questeval_scores(pred_answers: Sequence[str], ref_answers: Sequence[str]) -> dict[str, float]:
    """ragkit's score of answers read from a generated text against those read from the reference.

    Questions the reference itself cannot answer are dropped (they test nothing).
    `quest_f1_incl_unanswered` is the mean token F1 against the reference answer over the rest,
    an unanswered question scoring 0. NaN when no question is left, so an empty item cannot
    pass as a perfect or a failed one.
    """
    if len(pred_answers) != len(ref_answers):
        raise ValueError(
            f"pred_answers and ref_answers differ in length: "
            f"{len(pred_answers)} != {len(ref_answers)}"
        )
    pairs = [
        (p, r) for p, r in zip(pred_answers, ref_answers, strict=True) if not is_unanswerable(r)
    ]
    if not pairs:
        return {"quest_f1_incl_unanswered": math.nan, "n_questions": 0.0}
    f1s = [0.0 if is_unanswerable(p) else token_f1(p, r) for p, r in pairs]
    return {"quest_f1_incl_unanswered": sum(f1s) / len(pairs), "n_questions": float(len(pairs))}


def _text_of(output: Any) -> str:
    """The text of a generator's output: a ragkit Answer, a chat message or a plain string."""
    if isinstance(output, str):
        return output
    text = getattr(output, "text", None)
    if isinstance(text, str):
        return text
    content = getattr(output, "content", None)
    if isinstance(content, str):
        return content
    raise TypeError(f"generator returned {type(output).__name__}, expected an Answer or str")


def parse_questions(text: str, limit: int) -> list[str]:
    """Questions from a generated list, one per line, without numbering or duplicates.

    Lines ending in a question mark are taken first; only when there are none (small models
    drop them) do other lines count, so a header such as "Questions:" is not read as one.
    """
    lines = [_LIST_MARK.sub("", line).strip() for line in text.splitlines()]
    lines = [
        line
        for line in lines
        if len(line) >= 3 and not line.endswith((":", "：")) and len(_WORDS.findall(line)) >= 2
    ]
    marked = [line for line in lines if line.endswith(("?", "？"))]
    questions: list[str] = []
    for question in marked or lines:
        if question not in questions:
            questions.append(question)
    return questions[:limit]


class RAGQuestEval:
    """Question-answering evaluation of a generated text against its reference.

    `generator` is any langchain Runnable that takes a `ragkit.types.Prompt` and returns an
    `Answer` (or a string). `answer_kwargs` are call-time options for the answering calls only
    (for ragkit generators e.g. `{"max_new_tokens": 16}`: answers are short phrases, and a
    small cap bounds the cost of a model that rambles). The text being read stays in the prompt
    prefix and each question is the suffix, so a generator that reuses prefix KV computes the
    text once per item. `extractive` counts an answer that is not a span of the text read as
    no answer (see `judged_answer`), for judges too small to say so themselves.
    """

    def __init__(
        self,
        generator: Any,
        *,
        max_questions: int = 5,
        answer_kwargs: Mapping[str, Any] | None = None,
        questions_by: Literal["judge", "cloze"] = "judge",
        extractive: bool = False,
    ) -> None:
        if isinstance(max_questions, bool) or not isinstance(max_questions, int):
            raise ValueError(f"max_questions must be an integer, but got {max_questions!r}")
        if max_questions < 1:
            raise ValueError(f"max_questions must be >= 1, but got {max_questions}")
        if not hasattr(generator, "invoke") or not hasattr(generator, "batch"):
            raise ValueError(
                "generator must be a Runnable with invoke and batch, "
                f"got {type(generator).__name__}"
            )
        if questions_by not in ("judge", "cloze"):
            raise ValueError(f"questions_by must be 'judge' or 'cloze', got {questions_by!r}")
        self.generator = generator
        self.max_questions = max_questions
        self.answer_kwargs = dict(answer_kwargs or {})
        self.questions_by = questions_by
        self.extractive = extractive

    def setup(self) -> str:
        """A digest of everything besides the judge that shapes a score (prompts, question
        source and count, answer settings): results under another setup are not reused."""
        blob = json.dumps(
            [_PROMPTS, self.questions_by, self.max_questions, self.answer_kwargs, self.extractive],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    @staticmethod
    def _language(text: str) -> str:
        return "zh" if is_cjk(text) else "en"

    def generate_questions(self, reference: str, max_questions: int | None = None) -> list[str]:
        """Ask the generator for factual questions whose answers lie in the reference."""
        if max_questions is None:
            max_questions = self.max_questions
        prompts = _PROMPTS[self._language(reference)]
        prompt = Prompt.plain(prompts["generate"].format(n=max_questions, text=reference))
        return parse_questions(_text_of(self.generator.invoke(prompt)), max_questions)

    def _answer_prompts(self, context: str, questions: Sequence[str], lang: str) -> list[Prompt]:
        prompts = _PROMPTS[lang]
        prefix = prompts["answer"].format(context=context)
        return [
            Prompt(
                system=prompts["answer_system"],
                prefix=prefix,
                segments=(),
                suffix=prompts["question"].format(question=q),
                question=q,
            )
            for q in questions
        ]

    def answer(
        self, context: str, questions: Sequence[str], *, lang: str | None = None
    ) -> list[str]:
        """Answer every question from `context` alone, in one batch call."""
        if not questions:
            return []
        if lang is None:
            lang = self._language(context)
        prompts = self._answer_prompts(context, questions, lang)
        outputs = self.generator.batch(prompts, **self.answer_kwargs)
        read = context if self.extractive else None
        return [judged_answer(_text_of(o), read) for o in outputs]

    def score(
        self,
        output: str,
        reference: str,
        questions: Sequence[str] | None = None,
        answers: Sequence[str] | None = None,
    ) -> QuestEvalResult:
        """RAGQuestEval of `output` against `reference`.

        With `questions` and `answers` given (such as CRUD-RAG's precomputed factoid file) only
        the output is read. Otherwise the judge writes questions about the reference and both
        texts answer them in the same batch call, or with `questions_by="cloze"` the reference's
        key facts are blanked out by rule (`ragkit.eval.cloze`) and only the output answers.
        """
        if answers is not None and questions is None:
            raise ValueError("answers were given without questions")
        if questions is not None and answers is not None and len(questions) != len(answers):
            raise ValueError(
                f"questions and answers differ in length: {len(questions)} != {len(answers)}"
            )
        lang = self._language(reference)
        if questions is None and self.questions_by == "cloze":
            pairs = cloze_questions(reference, self.max_questions)
            questions, answers = [q for q, _ in pairs], [a for _, a in pairs]
        elif questions is None:
            questions = self.generate_questions(reference)
        questions = list(questions)
        if answers is not None:
            pred_answers = self.answer(output, questions, lang=lang)
            ref_answers = list(answers)
        else:
            prompts = self._answer_prompts(output, questions, lang)
            prompts += self._answer_prompts(reference, questions, lang)
            outputs = self.generator.batch(prompts, **self.answer_kwargs) if prompts else []
            n = len(questions)
            reads = [output] * n + [reference] * n if self.extractive else [None] * (2 * n)
            texts = [judged_answer(_text_of(o), r) for o, r in zip(outputs, reads, strict=True)]
            pred_answers, ref_answers = texts[:n], texts[n:]
        result = questeval_scores(pred_answers, ref_answers)
        crud_f1, crud_recall = (
            crud_questeval(ref_answers, pred_answers) if questions else (math.nan, math.nan)
        )
        return QuestEvalResult(
            crud_f1=crud_f1,
            crud_recall=crud_recall,
            f1_incl_unanswered=result["quest_f1_incl_unanswered"],
            n_questions=int(result["n_questions"]),
            questions=tuple(questions),
            pred_answers=tuple(pred_answers),
            ref_answers=tuple(ref_answers),
        )
