"""The OpenAI-compatible client against real servers on 127.0.0.1.

The main server is llama-cpp-python's own OpenAI server running the packaged GGUF; a tiny
standard-library HTTP server stands in for a flaky server to exercise retries on 5xx.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import httpx
import pytest

from ragkit.errors import ModelServerError
from ragkit.generation.openai_compat import OpenAICompatibleGenerator
from ragkit.testing import GeneratorContract
from ragkit.types import AnswerChunk, Prompt

LONG_PREFIX = "Reference notes:\n" + "".join(
    f"Note {i}: the depot at site {i} stores {i * 7} crates of tea and {i * 3} of rice.\n"
    for i in range(30)
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(llama_server_url: str) -> str:
    return llama_server_url


@pytest.fixture(scope="module")
def client(server_url) -> OpenAICompatibleGenerator:
    return OpenAICompatibleGenerator(server_url, max_new_tokens=16)


@pytest.mark.slow
def test_plain_invoke_resolves_the_model_and_reports_usage(client):
    answer = client.invoke("What is 2 + 3? Reply with just the number.")
    assert "5" in answer.text
    assert client.resolved_model()  # first id of /v1/models
    assert answer.usage.prompt_tokens > 10
    assert 0 < answer.usage.completion_tokens <= 16
    assert answer.usage.time_to_first_token_s == answer.usage.total_time_s > 0


@pytest.mark.slow
def test_stream_yields_deltas_and_usage(client):
    chunks = list(client.stream("List three fruits, comma separated."))
    assert all(isinstance(c, AnswerChunk) for c in chunks)
    final = chunks[-1].answer
    assert final is not None and len(chunks) > 2
    assert "".join(c.text for c in chunks).strip() == final.text
    assert final.usage.completion_tokens > 0  # counted from chunks if the server sends no usage
    assert final.usage.prompt_tokens > 10 or final.usage.prompt_tokens == 0
    assert 0 < final.usage.time_to_first_token_s < final.usage.total_time_s


@pytest.mark.slow
class TestOpenAICompatibleContract(GeneratorContract):
    """Against llama-server: stream joins to invoke, stop strings, usage, batch as invoke,
    async, and a cancelled caller ends the stream early."""

    cancellation = "truncates"

    @pytest.fixture
    def generator(self, client):
        return client


@pytest.mark.slow
def test_cached_prompt_tokens_from_the_server(client, server_url):
    """llama.cpp reuses the KV of the previous prompt's longest common prefix."""
    probe = httpx.post(
        server_url + "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
        timeout=60,
    ).json()
    if "prompt_tokens_details" not in probe.get("usage", {}):
        pytest.skip("this server does not report usage.prompt_tokens_details (llama-cpp-python)")
    first = client.invoke(Prompt.plain(LONG_PREFIX + "How many crates of tea at site 3?"))
    second = client.invoke(Prompt.plain(LONG_PREFIX + "How many crates of rice at site 5?"))
    assert first.usage.prompt_tokens > 300
    assert second.usage.cached_prompt_tokens > 300


@pytest.mark.slow
def test_context_overflow_is_a_server_message(client):
    with pytest.raises(ModelServerError) as err:
        client.invoke("word " * 5000)
    assert "HTTP 400" in str(err.value) and "\n" not in str(err.value)


def test_timeout_raises_quickly():
    """A server that accepts the connection and never answers: the read times out at once."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads or replies
        port = silent.getsockname()[1]
        slow = OpenAICompatibleGenerator(
            f"http://127.0.0.1:{port}", model="m", timeout_s=0.05, max_retries=0
        )
        started = time.monotonic()
        with pytest.raises(ModelServerError, match="timed out"):
            slow.invoke(LONG_PREFIX + "Summarise every note.", max_new_tokens=8)
        assert time.monotonic() - started < 5


def test_unreachable_port_fails_fast_with_the_url():
    port = free_port()
    gen = OpenAICompatibleGenerator(f"http://127.0.0.1:{port}", model="m", backoff_s=0.05)
    started = time.monotonic()
    with pytest.raises(ModelServerError) as err:
        gen.invoke("hello")
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message and "unreachable" in message and "3 attempts" in message
    assert "\n" not in message
    assert time.monotonic() - started < 5

    async def arun():
        await gen.ainvoke("hello")

    with pytest.raises(ModelServerError, match="unreachable"):
        asyncio.run(arun())


class FlakyHandler(BaseHTTPRequestHandler):
    """Answers 503 to the first `failures` requests, then a fixed chat completion."""

    failures = 2
    seen = 0

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        type(self).seen += 1
        if type(self).seen <= self.failures:
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "warming up"}}')
            return
        payload = {
            "choices": [{"message": {"role": "assistant", "content": f"ok {body['model']}"}}],
            "usage": {
                "prompt_tokens": 12,
                "completion_tokens": 2,
                "prompt_tokens_details": {"cached_tokens": 8},
            },
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def flaky_url() -> Iterator[str]:
    FlakyHandler.seen = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_retries_5xx_then_reads_cached_tokens(flaky_url):
    gen = OpenAICompatibleGenerator(flaky_url, model="tiny", backoff_s=0.01, max_retries=2)
    answer = gen.invoke("hi")
    assert FlakyHandler.seen == 3
    assert answer.text == "ok tiny"
    assert answer.usage.prompt_tokens == 12 and answer.usage.cached_prompt_tokens == 8


def test_gives_up_after_max_retries(flaky_url):
    gen = OpenAICompatibleGenerator(flaky_url, model="tiny", backoff_s=0.01, max_retries=1)
    with pytest.raises(ModelServerError, match="HTTP 503: warming up"):
        gen.invoke("hi")
    assert FlakyHandler.seen == 2


def test_invalid_settings_name_the_value():
    with pytest.raises(ValueError, match="localhost:8000"):
        OpenAICompatibleGenerator("localhost:8000")
    with pytest.raises(ValueError, match="max_retries"):
        OpenAICompatibleGenerator("http://x", max_retries=-1)
    assert OpenAICompatibleGenerator("http://x:1/").base_url == "http://x:1/v1"
