"""Concurrent requests through `ragkit serve` (a real uvicorn on 127.0.0.1) to a real batching
model server (llama.cpp's llama-server with 4 parallel slots) over a real chromadb index."""

from __future__ import annotations

import contextlib
import difflib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from llama_server_support import PASSTHROUGH_SPEC, busy_slots, llama_server

from ragkit.serve.app import ServeSettings, create_app
from ragkit.serve.background import BackgroundServer


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> str:
    with llama_server(tmp_path_factory.mktemp("llama-server"), parallel=4) as url:
        yield url


@pytest.fixture(scope="module")
def index(tmp_path_factory, bundled_index, embedder) -> Path:
    """A folder whose `idx` is the run's real chromadb index of the bundled corpus."""
    from ragkit import build

    folder = tmp_path_factory.mktemp("passthrough")
    (folder / "idx").symlink_to(bundled_index, target_is_directory=True)
    build.register_embedder(pipeline_spec(folder, "http://127.0.0.1:9").embedder, embedder)
    return folder


def pipeline_spec(folder: Path, url: str):
    """A spec over the index in `folder` whose generator is the OpenAI-compatible `url`."""
    from ragkit.spec import load_spec

    spec_file = folder / "passthrough.yaml"
    spec_file.write_text(PASSTHROUGH_SPEC.format(url=url), encoding="utf-8")
    return load_spec(spec_file).with_store(str(folder / "idx"))


@pytest.fixture(scope="module")
def rag(index, backend):
    from ragkit import build

    return build.pipeline(pipeline_spec(index, backend))


@pytest.fixture(scope="module")
def offline_rag(index):
    """The same pipeline with a generator nobody listens to: for refusals before generation."""
    from ragkit import build

    return build.pipeline(pipeline_spec(index, "http://127.0.0.1:9"))


def questions(repo_root: Path, n: int) -> list[str]:
    lines = (repo_root / "evals" / "bundled" / "questions.jsonl").read_text().splitlines()
    return [json.loads(line)["question"] for line in lines[:n]]


def ask(question: str, max_tokens: int = 8, stream: bool = True) -> dict:
    return {
        "model": "passthrough",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


def streamed(url: str, question: str) -> dict:
    """One streamed chat completion: its text, ids, final sources, and whether it ended."""
    with httpx.stream(
        "POST", url + "/v1/chat/completions", json=ask(question), timeout=600
    ) as response:
        assert response.status_code == 200, response.read()
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    return {
        "text": "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks),
        "ids": {c["id"] for c in chunks},
        "sources": chunks[-1]["choices"][0]["delta"].get("sources"),
        "done": events[-1] == "[DONE]",
        "error": [c for c in chunks if "error" in c],
    }


def wait_for(condition, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.llama_server
def test_sixteen_concurrent_streams_each_get_their_own_answer(rag, backend, repo_root):
    asked = questions(repo_root, 16)
    settings = ServeSettings(max_queue=16)
    with BackgroundServer(create_app([rag], settings)) as server:
        alone = {q: streamed(server.url, q) for q in asked[:4]}  # one at a time
        peak = {"backend": 0, "ragkit": 0}
        running = threading.Event()
        running.set()

        def watch() -> None:
            while running.is_set():
                with contextlib.suppress(httpx.HTTPError):  # a slow poll is skipped, not fatal
                    peak["backend"] = max(peak["backend"], busy_slots(backend))
                    health = httpx.get(server.url + "/health", timeout=30).json()
                    peak["ragkit"] = max(peak["ragkit"], health["in_flight"])
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with ThreadPoolExecutor(16) as pool:
                results = list(pool.map(lambda q: streamed(server.url, q), asked))
        finally:
            running.clear()
            watcher.join()
        metrics = httpx.get(server.url + "/metrics").text

    assert all(r["done"] and not r["error"] for r in results)
    assert all(r["text"].strip() for r in results)
    ids = [r["ids"] for r in results]
    assert all(len(i) == 1 for i in ids) and len(set.union(*ids)) == 16
    # Each request got the passages of its own question, named relative to the corpus folder.
    for question, result in zip(asked, results, strict=True):
        expected = [h.chunk.id for h in rag.retrieve([question])[0]]
        assert [s["chunk_id"] for s in result["sources"]] == expected, question
        assert all(not s["source"].startswith("/") for s in result["sources"])
        assert all("/" not in s["source"] for s in result["sources"])  # the corpus is flat
    # Its own answer too: concurrent answers are closest to the same question's answer alone.
    for i, question in enumerate(asked[:4]):
        mine = results[i]["text"]
        scores = [difflib.SequenceMatcher(None, mine, a["text"]).ratio() for a in alone.values()]
        assert scores.index(max(scores)) == i, (question, mine, scores)
    # Concurrency passed through: several requests ran at once in ragkit and in the backend.
    assert peak["ragkit"] >= 4, peak
    assert peak["backend"] >= 2, peak
    assert 'ragkit_requests_in_flight{generator="passthrough"} 0.0' in metrics
    assert 'ragkit_max_concurrency{generator="passthrough"} 64.0' in metrics


@pytest.mark.slow
@pytest.mark.llama_server
def test_queue_full_only_beyond_concurrency_plus_queue(rag):
    settings = ServeSettings(max_concurrency=2, max_queue=2)
    with BackgroundServer(create_app([rag], settings)) as server:
        results: list[httpx.Response] = []

        def post() -> None:
            body = ask("Describe Varrow Point in detail.", max_tokens=16, stream=False)
            results.append(httpx.post(server.url + "/v1/chat/completions", json=body, timeout=600))

        threads = [threading.Thread(target=post) for _ in range(4)]
        for thread in threads:
            thread.start()

        def health() -> dict:
            return httpx.get(server.url + "/health").json()

        wait_for(lambda: health()["in_flight"] == 2 and health()["queue_depth"] == 2)
        refused = httpx.post(
            server.url + "/v1/chat/completions", json=ask("One more?", 4, False), timeout=60
        )
        for thread in threads:
            thread.join(600)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    error = refused.json()["error"]
    assert error["code"] == "queue_full" and "max_concurrency=2" in error["message"]
    assert [r.status_code for r in results] == [200] * 4


def test_prompt_over_the_limit_is_400_naming_it(offline_rag):
    settings = ServeSettings(max_prompt_tokens=50)
    with BackgroundServer(create_app([offline_rag], settings)) as server:
        long = ask("Tell me about the harbour. " * 40, stream=False)
        response = httpx.post(server.url + "/v1/chat/completions", json=long, timeout=60)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "prompt_too_long" and error["param"] == "messages"
        assert "50 tokens" in error["message"] and "--max-prompt-tokens" in error["message"]
        # history counts too
        history = {
            "model": "passthrough",
            "messages": [
                {"role": "user", "content": "harbour " * 60},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "And?"},
            ],
        }
        response = httpx.post(server.url + "/v1/chat/completions", json=history, timeout=60)
        assert response.status_code == 400 and "50 tokens" in response.json()["error"]["message"]


def test_lone_surrogate_is_400_without_internal_text(offline_rag):
    with BackgroundServer(create_app([offline_rag])) as server:
        raw = b'{"model": "passthrough", "messages": [{"role": "user", "content": "hi \\ud800"}]}'
        response = httpx.post(
            server.url + "/v1/chat/completions",
            content=raw,
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        assert response.status_code == 400
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["param"] == "messages.0.content" and "U+D800" in error["message"]
        assert "Error" not in error["message"] and "Traceback" not in response.text
        stop = raw.replace(b"hi \\ud800", b"hi").replace(b"}]}", b'}], "stop": ["\\udfff"]}')
        response = httpx.post(
            server.url + "/v1/chat/completions",
            content=stop,
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        assert response.status_code == 400 and response.json()["error"]["param"] == "stop.0"


def test_model_server_failure_hides_its_details(offline_rag):
    """The backend is gone: the client gets a 502 with an incident id, not the backend's URL."""
    from ragkit.generation.openai_compat import OpenAICompatibleGenerator

    dead = OpenAICompatibleGenerator(
        base_url="http://127.0.0.1:9", model="x", max_retries=0, timeout_s=2
    )
    pipeline = offline_rag.model_copy(update={"generator": dead})
    with BackgroundServer(create_app([pipeline])) as server:
        response = httpx.post(
            server.url + "/v1/chat/completions", json=ask("Who?", stream=False), timeout=60
        )
        assert response.status_code == 502
        message = response.json()["error"]["message"]
        assert "incident" in message and "127.0.0.1" not in message and "Error" not in message
        with httpx.stream(
            "POST", server.url + "/v1/chat/completions", json=ask("Who?"), timeout=60
        ) as streaming:
            events = [line for line in streaming.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        error = json.loads(events[-2][6:])["error"]
        assert error["code"] == "model_server_error" and "127.0.0.1" not in error["message"]
