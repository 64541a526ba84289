"""The contract classes of `ragkit.testing` as a user's plugin uses them: a generator and a
retriever defined here pass; the scripted generator passes; and a generator that breaks the
contract (its stream disagrees with invoke) is caught."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence

import pytest

from ragkit.generation.base import AnswerChunks, GenerationParams, Generator, build_usage
from ragkit.generation.scripted import ScriptedGenerator
from ragkit.retrieval import Retriever
from ragkit.testing import GeneratorContract, RetrieverContract
from ragkit.types import Answer, AnswerChunk, Chunk, Prompt, Query, Retrieved

DOCS = {
    "harbour": "Mara Lindqvist has been the harbour master of Varrow Point since 2017.",
    "ferry": "The ferry to Holm Island leaves the harbour twice a day in summer.",
    "founding": "Varrow Point was founded in 1794 by herring fishers.",
}


class WordsGenerator(Generator):
    """A user's plugin: answers with the question's words reversed, one word per chunk."""

    def _stream_one(self, prompt: Prompt, params: GenerationParams) -> AnswerChunks:
        started = time.perf_counter()
        words = [f"{w} " for w in reversed(prompt.question.split())][: params.max_new_tokens]
        text, first = "", None
        for word in words:
            if any(s in text + word for s in params.stop):
                cut = min((text + word).index(s) for s in params.stop if s in text + word)
                yield AnswerChunk((text + word)[len(text) : cut])
                text = (text + word)[:cut]
                break
            first = first or time.perf_counter()
            text += word
            yield AnswerChunk(word)
        usage = build_usage(
            prompt_tokens=len(prompt.user_text.split()),
            cached_prompt_tokens=0,
            completion_tokens=len(text.split()),
            started=started,
            first_token_at=first,
            finished=time.perf_counter(),
        )
        yield AnswerChunk("", answer=Answer(text=text.strip(), usage=usage))


class OverlapRetriever(Retriever):
    """A user's plugin: documents ranked by the words they share with the question."""

    def _retrieve(self, queries: Sequence[Query], top_k: int) -> list[list[Retrieved]]:
        out = []
        for query in queries:
            words = {w.strip("?.").lower() for w in query.question.split()}
            scored = [
                (len(words & {w.strip(".").lower() for w in text.split()}), doc, text)
                for doc, text in DOCS.items()
            ]
            ranked = sorted((s for s in scored if s[0] > 0), key=lambda s: -s[0])[:top_k]
            out.append(
                [
                    Retrieved(Chunk(f"{doc}:0", doc, text, 0, len(text)), float(n), rank, "words")
                    for rank, (n, doc, text) in enumerate(ranked, start=1)
                ]
            )
        return out


class TestAPluginGeneratorKeepsTheContract(GeneratorContract):
    prompt = "one two three four five six seven"

    @pytest.fixture
    def generator(self):
        return WordsGenerator(max_new_tokens=12)


class TestAPluginRetrieverKeepsTheContract(RetrieverContract):
    queries = ("Who is the harbour master of Varrow Point?", "When was Varrow Point founded?")

    @pytest.fixture
    def retriever(self):
        return OverlapRetriever(top_k=2)


class TestScriptedGenerator(GeneratorContract):
    @pytest.fixture
    def generator(self):
        return ScriptedGenerator(max_new_tokens=12, fallback="One two three four five six.")


class StreamsSomethingElse(WordsGenerator):
    """Breaks the contract: `invoke` answers differently from what `stream` yields."""

    def _invoke_one(self, prompt: Prompt, params: GenerationParams) -> Answer:
        answer = super()._invoke_one(prompt, params)
        return Answer(text=answer.text + " extra", usage=answer.usage)


def test_a_broken_generator_fails_the_contract():
    contract = GeneratorContract()
    with pytest.raises(AssertionError):
        contract.test_invoke_text_is_the_streamed_text_joined(StreamsSomethingElse())


def test_importing_ragkit_does_not_import_pytest():
    code = "import sys, ragkit, ragkit.build, ragkit.spec; print('pytest' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
