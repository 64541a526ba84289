"""The chat server's request path on the scripted generator: a real uvicorn server on
127.0.0.1 and a real index, with rule-based answers, so the protocol is checked in seconds.
The same path with the packaged model is covered (slow) in test_serve_api.py."""

from __future__ import annotations

import json

import httpx
import pytest

from ragkit import build
from ragkit.generation.scripted import ScriptedGenerator
from ragkit.serve.app import ServeSettings, create_app
from ragkit.serve.background import BackgroundServer

QUESTION = "Who has been the harbour master of Varrow Point since 2017?"


@pytest.fixture(scope="module")
def scripted():
    return ScriptedGenerator()


@pytest.fixture(scope="module")
def server(scripted_spec, scripted):
    rag = build.pipeline(scripted_spec).model_copy(update={"generator": scripted})
    with BackgroundServer(create_app([rag], ServeSettings(max_tokens_limit=64))) as running:
        yield running


def ask(stream: bool) -> dict:
    return {
        "model": "naive",
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 32,
        "stream": stream,
    }


def test_a_completion_answers_from_the_pipelines_prompt(server, scripted):
    reply = httpx.post(server.url + "/v1/chat/completions", json=ask(False), timeout=60).json()
    message = reply["choices"][0]["message"]
    prompt = scripted.prompts[-1]
    assert message["content"] == scripted.reply_for(prompt)
    assert message["content"].endswith("[1]")
    assert [s["number"] for s in message["sources"]] == [1, 2]
    assert "harbour-report" in message["sources"][0]["source"]
    assert reply["usage"]["completion_tokens"] == len(message["content"].split())


def test_streamed_deltas_add_up_to_the_plain_answer(server):
    plain = httpx.post(server.url + "/v1/chat/completions", json=ask(False), timeout=60).json()
    with httpx.stream(
        "POST", server.url + "/v1/chat/completions", json=ask(True), timeout=60
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text.strip() == plain["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_the_chat_page_ships_with_the_package(server):
    page = httpx.get(server.url + "/", timeout=30)
    assert page.status_code == 200 and 'id="question"' in page.text
    assert httpx.get(server.url + "/static/chat.js", timeout=30).status_code == 200
