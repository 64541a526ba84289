"""Every named pipeline behind the chat server, through the pipeline contract: each one loads as
`ragkit serve` loads it (`load_served`), answers a plain and a streamed request on a real uvicorn
server on 127.0.0.1 over a real index of the bundled corpus, and Iter-RetGen also runs from a
YAML through the `ragkit serve` command and, slow, with the packaged model."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest
from llama_server_support import ragkit_serve_process

from ragkit import build
from ragkit.pipeline import RAGPipeline
from ragkit.protocols import Pipeline
from ragkit.serve.app import ServeSettings, create_app
from ragkit.serve.background import BackgroundServer
from ragkit.serve.command import load_served
from ragkit.spec import load_spec, pipeline_names
from ragkit.stages.iterate import IterRetGen
from ragkit.types import Query

QUESTION = "Who has been the harbour master of Varrow Point since 2017?"
ITERATING_YAML = "retriever: {kind: bm25, top_k: 4}\ngenerator: {kind: scripted}\n"
ITERATING_YAML += "iterate: {rounds: 2}\n"


@pytest.fixture(scope="module")
def index(bundled_index, embedder) -> str:
    """One index of the bundled corpus that every named pipeline reads (same embedder and
    chunker in all of them)."""
    build.register_embedder(load_spec("best").embedder, embedder)
    return bundled_index


def scripted(name: str):
    """The named spec answered by the scripted generator (its rewriters and judges too)."""
    return load_spec(name).override(generator={"kind": "scripted", "max_new_tokens": 40})


def chat(url: str, model: str, stream: bool) -> httpx.Response | list[dict]:
    body = {"model": model, "messages": [{"role": "user", "content": QUESTION}], "stream": stream}
    if not stream:
        return httpx.post(url + "/v1/chat/completions", json=body, timeout=120)
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200, response.read()
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]", lines[-3:]
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def streamed_text(chunks: list[dict]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)


@pytest.mark.slow
def test_every_named_pipeline_is_served_and_streams_an_answer(index):
    names = pipeline_names()
    assert "iter-retgen" in names and "naive" in names
    served = load_served([scripted(n) for n in names], store=index)
    assert sorted(served) == sorted(names)
    assert all(isinstance(rag, Pipeline) for rag in served.values())
    assert isinstance(served["iter-retgen"], IterRetGen)
    with BackgroundServer(create_app(served, ServeSettings(max_tokens_limit=64))) as server:
        listed = httpx.get(server.url + "/v1/models", timeout=30).json()
        assert sorted(card["id"] for card in listed["data"]) == sorted(names)
        for name in names:
            chunks = chat(server.url, name, stream=True)
            assert "error" not in chunks[-1], (name, chunks[-1])
            last = chunks[-1]["choices"][0]
            assert last["finish_reason"] in ("stop", "length"), name
            assert last["delta"]["sources"], name
            text = streamed_text(chunks).strip()
            assert text, name
            plain = chat(server.url, name, stream=False)
            assert plain.status_code == 200, (name, plain.text)
            message = plain.json()["choices"][0]["message"]
            assert message["content"] == text, name
            assert [s["chunk_id"] for s in message["sources"]] == [
                s["chunk_id"] for s in last["delta"]["sources"]
            ], name


def test_iter_retgen_keeps_every_round_with_a_bound_generator(index):
    """A request's sampling settings bind the generator of every round, not a copy beside it."""
    rag = load_served([scripted("iter-retgen")], store=index, warm_up=False)["iter-retgen"]
    assert isinstance(rag, IterRetGen) and isinstance(rag.pipeline, RAGPipeline)
    bound = rag.with_generator(rag.generator.bind(max_new_tokens=3))
    assert isinstance(bound, IterRetGen) and bound.pipeline_name == "iter-retgen"
    assert rag.generator is not bound.generator and bound.pipeline.generator is bound.generator
    answer = bound.invoke(QUESTION)
    assert len(answer.trace) >= 2
    assert all(len(t["draft"].split()) <= 3 for t in answer.trace)
    # The contract's search is the first round's: the wrapped pipeline's own.
    first = rag.retrieve([Query(QUESTION)])[0]
    assert [h.chunk.id for h in first] == [
        h.chunk.id for h in rag.pipeline.retrieve([Query(QUESTION)])[0]
    ]
    assert [h.chunk.id for h in answer.retrieved][: len(first)] == [h.chunk.id for h in first]


async def _astreamed(rag: Pipeline) -> list:
    return [piece async for piece in rag.astream(QUESTION)]


def test_astream_yields_deltas_then_the_answer_for_every_kind_of_pipeline(index):
    import asyncio

    for name in ("naive", "iter-retgen"):
        rag = load_served([scripted(name)], store=index, warm_up=False)[name]
        pieces = asyncio.run(_astreamed(rag))
        final = pieces[-1].answer
        assert final is not None and all(p.answer is None for p in pieces[:-1]), name
        assert "".join(p.text for p in pieces).strip() == final.text == rag.invoke(QUESTION).text
        batch = asyncio.run(rag.abatch([QUESTION, QUESTION]))
        assert [a.text for a in batch] == [final.text, final.text]


def ragkit_serve(spec_file: Path, store: str):
    return ragkit_serve_process(spec_file.parent, "-p", str(spec_file), "--store", store)


@pytest.mark.slow
def test_ragkit_serve_starts_an_iterating_yaml_and_answers(index, tmp_path):
    spec_file = tmp_path / "it.yaml"
    spec_file.write_text(ITERATING_YAML, encoding="utf-8")
    with ragkit_serve(spec_file, index) as (process, url, log_path):
        plain = chat(url, "it", stream=False)
        assert plain.status_code == 200, plain.text
        message = plain.json()["choices"][0]["message"]
        chunks = chat(url, "it", stream=True)
        assert streamed_text(chunks).strip() == message["content"] and message["sources"]
        process.send_signal(signal.SIGTERM)
        rc = process.wait(120)
        log = log_path.read_text(errors="replace")
    assert rc == 0 and "Traceback" not in log, log[-3000:]


@pytest.mark.slow
def test_iter_retgen_is_served_with_the_packaged_model(index):
    from openai import OpenAI

    spec = load_spec("iter-retgen").override(generator={"max_new_tokens": 24})
    served = load_served([spec], store=index)
    rag = served["iter-retgen"]
    with BackgroundServer(create_app(served, ServeSettings(max_tokens_limit=64))) as server:
        client = OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=600)
        messages = [{"role": "user", "content": QUESTION}]
        plain = client.chat.completions.create(model="iter-retgen", messages=messages)
        pieces = list(
            client.chat.completions.create(model="iter-retgen", messages=messages, stream=True)
        )
    expected = rag.invoke(QUESTION)
    assert 1 <= len(expected.trace) <= 2
    message = plain.choices[0].message
    assert message.content == expected.text and expected.text
    sources = message.model_extra["sources"]
    assert [s["chunk_id"] for s in sources] == [h.chunk.id for h in expected.retrieved]
    text = "".join(p.choices[0].delta.content or "" for p in pieces if p.choices)
    assert text.strip() == expected.text
    assert pieces[-1].choices[0].delta.model_extra["sources"] == sources
    assert plain.usage is not None and plain.usage.completion_tokens >= len(expected.trace)
