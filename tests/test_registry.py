"""A new kind is one registration call: a retriever and a generator defined here, each
registered once with its typed options and what it uses, load from YAML (their own keys
checked like any other), join a tune space, and are listed by `ragkit kinds`, with no change to
the spec, the component table, the tuner or the benchmarks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence

import pytest
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from ragkit import load_pipeline
from ragkit.cli import app
from ragkit.errors import ConfigError
from ragkit.generation.base import AnswerChunks, GenerationParams, Generator, build_usage
from ragkit.registry import GENERATORS, RETRIEVERS, REWRITERS
from ragkit.retrieval import Retriever
from ragkit.spec import load_spec, parse_spec
from ragkit.tune import space as tune_space
from ragkit.tune.retrieval import needs_embeddings, uses_generator
from ragkit.types import Answer, AnswerChunk, Prompt, Query, Retrieved

QUESTION = "Who has been the harbour master of Varrow Point since 2017?"


class TermRetriever(Retriever):
    """Chunks ranked by how many of the question's words they contain (at least `min_count`)."""

    source: object
    min_count: int = 1

    def _retrieve(self, queries: Sequence[Query], top_k: int) -> list[list[Retrieved]]:
        chunks = self.source.get_chunks()  # type: ignore[attr-defined]
        out = []
        for query in queries:
            words = {w.strip("?.,").lower() for w in query.question.split()}
            scored = [(sum(w in c.text.lower() for w in words), c) for c in chunks]
            kept = sorted((p for p in scored if p[0] >= self.min_count), key=lambda p: -p[0])
            kept = kept[:top_k]
            out.append(
                [
                    Retrieved(chunk=c, score=float(s), rank=r, source="terms")
                    for r, (s, c) in enumerate(kept, start=1)
                ]
            )
        return out


class TermOptions(BaseModel):
    top_k: int = Field(5, gt=0)
    min_count: int = Field(1, gt=0)


class EchoGenerator(Generator):
    """Answers with the question, upper-cased when `shout` is set."""

    shout: bool = False

    def _stream_one(self, prompt: Prompt, params: GenerationParams) -> AnswerChunks:
        text = prompt.question.upper() if self.shout else prompt.question
        yield AnswerChunk(text)
        now = time.perf_counter()
        usage = build_usage(
            prompt_tokens=len(prompt.user_text.split()),
            cached_prompt_tokens=0,
            completion_tokens=len(text.split()),
            started=now,
            first_token_at=now,
            finished=now,
        )
        yield AnswerChunk("", answer=Answer(text=text, usage=usage))


class EchoOptions(BaseModel):
    max_new_tokens: int = 16
    shout: bool = False


# The whole of what a new kind takes: one call each.
RETRIEVERS.register(
    "terms-test",
    lambda spec, parts: TermRetriever(source=parts.store, **spec.settings.model_dump()),
    options=TermOptions,
    uses=("store",),
)
GENERATORS.register(
    "echo-test",
    lambda spec, parts: EchoGenerator(**spec.settings.model_dump()),
    options=EchoOptions,
)


def write(folder, body: str) -> str:
    path = folder / "mine.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return str(path)


def test_registered_kinds_run_from_yaml_with_their_own_keys(tmp_path, scripted_spec):
    path = write(
        tmp_path,
        f"""
        name: mine
        store: {{location: {scripted_spec.store.location}}}
        retriever: {{kind: terms-test, top_k: 2, min_count: 2}}
        generator: {{kind: echo-test, shout: true}}
        """,
    )
    answer = load_pipeline(path).invoke(QUESTION)
    assert answer.text == QUESTION.upper()
    assert [h.rank for h in answer.retrieved] == [1, 2]
    assert all(h.source == "terms" for h in answer.retrieved)
    assert "Varrow Point" in answer.retrieved[0].chunk.text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("retriever: {kind: terms-test, min_count: 0}", "retriever.min_count: Input should be"),
        ("retriever: {kind: dense, min_count: 2}", "retriever.min_count: unknown key (got 2)"),
        ("generator: {kind: echo-test, shout: loud}", "generator.shout: Input should be"),
        ("generator: {kind: local, shout: true}", "generator.shout: unknown key"),
    ],
)
def test_a_kinds_own_keys_are_checked_in_one_line(tmp_path, body, expected):
    with pytest.raises(ConfigError) as err:
        load_spec(write(tmp_path, body + "\n"))
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'mine.yaml'}: {expected}")
    assert "\n" not in message and "pydantic" not in message


def test_what_a_kind_uses_decides_what_the_tuner_computes():
    terms = parse_spec({"retriever": {"kind": "terms-test"}, "generator": {"kind": "echo-test"}})
    assert not needs_embeddings(terms) and not uses_generator(terms)
    dense = terms.override(retriever={"kind": "dense"})
    assert needs_embeddings(dense)
    judged = terms.override(rerank={"kind": "llm-judge"})
    assert uses_generator(judged)
    # Conversational search wraps the retriever and calls no model.
    chat = load_spec("chat")
    assert REWRITERS.uses(chat.rewrite.mode, "retriever")
    assert not uses_generator(chat)


def test_a_registered_kind_joins_a_tune_space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "space:\n  retriever: [{kind: bm25}, {kind: terms-test, min_count: 3}]\n"
        "  retriever.top_k: [2, 4]\n",
        encoding="utf-8",
    )
    base = parse_spec({"generator": {"kind": "scripted"}, "retriever": {"kind": "bm25"}})
    variants = tune_space.check(tune_space.load_space(path), base).draw()
    terms = [v.spec for v in variants if v.spec.retriever.kind == "terms-test"]
    assert sorted(s.retriever.top_k for s in terms) == [2, 4]
    assert all(s.retriever.settings.min_count == 3 for s in terms)  # type: ignore[union-attr]
    assert not any(needs_embeddings(s) for s in terms)  # searched from chunks in memory
    # A key the kind adds is a key of the space as well; bm25 does not take it.
    path.write_text("space:\n  retriever.min_count: [1, 3]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"space\.retriever\.min_count: value 1: unknown key"):
        tune_space.check(tune_space.load_space(path), base)
    on_terms = base.override(retriever={"kind": "terms-test"})
    assert len(tune_space.check(tune_space.load_space(path), on_terms).draw()) == 2


def test_a_sweep_searches_a_registered_kind_from_chunks_in_memory(tmp_path, scripted_spec):
    from ragkit import build
    from ragkit.tune.retrieval import in_memory

    chunks = build.store(scripted_spec).get_chunks()
    spec = scripted_spec.with_store(str(tmp_path / "empty")).override(
        retriever={"kind": "terms-test", "top_k": 2, "min_count": 2}
    )
    rag = build.pipeline(spec)
    assert rag.retrieve([Query(QUESTION)]) == [[]]  # its own store is empty
    [hits] = in_memory(rag, chunks, spec).retrieve([Query(QUESTION)])
    assert len(hits) == 2 and "Varrow Point" in hits[0].chunk.text


def test_kinds_lists_every_registered_kind_with_its_keys_and_uses():
    result = CliRunner().invoke(app, ["kinds"], catch_exceptions=False)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    terms = next(line for line in lines if line.strip().startswith("terms-test:"))
    assert "keys: top_k, min_count" in terms and "uses: store" in terms
    echo = next(line for line in lines if line.strip().startswith("echo-test:"))
    assert "Answers with the question" not in echo  # a lambda has no docstring to show
    assert "keys: max_new_tokens, shout" in echo
    history = next(line for line in lines if line.strip().startswith("history:"))
    assert "uses: retriever" in history


@pytest.mark.parametrize("first", ["ragkit.components", "ragkit.stages.factory", "ragkit.cli"])
def test_the_kinds_load_whichever_module_comes_first(first):
    code = f"import {first}; from ragkit.spec import PipelineSpec; print(PipelineSpec().retriever)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "kind='dense'" in out.stdout
