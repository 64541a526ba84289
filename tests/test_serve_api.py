"""The chat server over HTTP: a real uvicorn server on 127.0.0.1 with the packaged local model and
a real chromadb index of the bundled corpus, driven by the official `openai` client and httpx."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from ragkit.serve.app import ServeSettings, create_app, to_query
from ragkit.serve.background import BackgroundServer
from ragkit.serve.schemas import ChatMessage

KEY = "test-key"
QUESTION = "Who founded Varrow Point?"  # the same question keeps the prompt prefix in the KV cache
AUTH = {"Authorization": f"Bearer {KEY}"}
SPEC = """\
name: naive
retriever: {kind: dense, top_k: 2}
generator: {kind: local, max_new_tokens: 48}
"""


def serve_pipeline(tmp_path_factory, bundled_index: str, local_generator):
    """A pipeline over the run's bundled index whose generator is the test run's local model."""
    from ragkit import build
    from ragkit.spec import load_spec

    spec_file = tmp_path_factory.mktemp("serve-spec") / "naive.yaml"
    spec_file.write_text(SPEC, encoding="utf-8")
    spec = load_spec(spec_file).with_store(bundled_index)
    return build.pipeline(spec).model_copy(update={"generator": local_generator})


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundled_index, local_generator):
    rag = serve_pipeline(tmp_path_factory, bundled_index, local_generator)
    settings = ServeSettings(
        api_key=KEY, max_queue=1, max_concurrency=1, max_tokens_limit=64, max_body_bytes=20_000
    )
    with BackgroundServer(create_app([rag], settings)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=600)


def metric(server, name: str, labels: str = "") -> float:
    text = httpx.get(server.url + "/metrics", headers=AUTH).text
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} ") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for(condition, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def ask(max_tokens: int, stream: bool, **extra) -> dict:
    return {
        "model": "naive",
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": max_tokens,
        "stream": stream,
        **extra,
    }


# ---- pure request mapping ---------------------------------------------------------------


def test_messages_become_question_and_history():
    messages = [
        ChatMessage(role="system", content="be brief"),
        ChatMessage(role="user", content="Who runs the ferry?"),
        ChatMessage(role="assistant", content="Saltreach Ferries [1]."),
        ChatMessage(role="user", content=[{"type": "text", "text": "When was it founded?"}]),
    ]
    query = to_query(messages, max_history=8)
    assert query.question == "When was it founded?"
    assert query.history == (
        ("user", "Who runs the ferry?"),
        ("assistant", "Saltreach Ferries [1]."),
    )
    assert to_query(messages, max_history=1).history == (("assistant", "Saltreach Ferries [1]."),)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="max_queue"):
        ServeSettings(max_queue=-1)
    with pytest.raises(ValueError, match="max_tokens_limit"):
        ServeSettings(max_tokens_limit=0)


def test_serve_refuses_unsafe_or_invalid_options():
    from ragkit.errors import ConfigError
    from ragkit.serve.command import serve

    with pytest.raises(ConfigError, match="--api-key"):
        serve(["naive"], host="0.0.0.0")
    with pytest.raises(ConfigError, match="--port"):
        serve(["naive"], port=70000)
    with pytest.raises(ConfigError, match="at least one pipeline"):
        serve([])


# ---- completions with the real model -------------------------------------------------------


@pytest.mark.slow
def test_plain_then_streamed_completion(client, server):
    plain = client.chat.completions.create(
        model="naive", messages=[{"role": "user", "content": QUESTION}], max_tokens=8
    )
    message = plain.choices[0].message
    assert plain.object == "chat.completion" and plain.model == "naive"
    assert message.role == "assistant" and message.content.strip()
    sources = message.model_extra["sources"]
    assert [s["number"] for s in sources] == [1, 2]
    assert any("town-overview" in s["source"] for s in sources)
    assert all(s["chunk_id"] and s["text"] and isinstance(s["score"], float) for s in sources)
    assert 0 < plain.usage.completion_tokens <= 8
    assert plain.usage.prompt_tokens > 50
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens
    assert plain.choices[0].finish_reason in ("stop", "length")

    chunks = list(
        client.chat.completions.create(
            model="naive",
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=8,
            stream=True,
        )
    )
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip()
    last = chunks[-1]
    assert last.choices[0].finish_reason in ("stop", "length")
    assert [s["number"] for s in last.choices[0].delta.model_extra["sources"]] == [1, 2]
    assert 0 < last.usage.completion_tokens <= 8
    # The same prompt a second time: its prefix comes from the generator's KV cache.
    assert last.usage.prompt_tokens == plain.usage.prompt_tokens
    assert last.usage.prompt_tokens_details.cached_tokens > 0
    assert metric(server, "ragkit_cached_token_ratio") > 0
    assert metric(server, "ragkit_chat_requests_total", '{model="naive",stream="true"}') >= 1


@pytest.mark.slow
def test_typed_text_parts_are_answered_and_an_image_part_refused(client):
    from openai import BadRequestError

    half = len(QUESTION) // 2
    parts = [
        {"type": "text", "text": QUESTION[:half]},
        {"type": "text", "text": QUESTION[half:]},
    ]
    reply = client.chat.completions.create(
        model="naive", messages=[{"role": "user", "content": parts}], max_tokens=8
    )
    whole = client.chat.completions.create(
        model="naive", messages=[{"role": "user", "content": QUESTION}], max_tokens=8
    )
    assert reply.choices[0].message.content.strip()
    assert reply.choices[0].message.content == whole.choices[0].message.content
    assert reply.choices[0].message.model_extra["sources"]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    with pytest.raises(BadRequestError, match="'image_url'.*takes text only"):
        client.chat.completions.create(
            model="naive", messages=[{"role": "user", "content": [parts[0], image]}]
        )


@pytest.mark.slow
def test_stream_ends_with_done_marker(server):
    with httpx.stream(
        "POST", server.url + "/v1/chat/completions", json=ask(4, True), headers=AUTH, timeout=600
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    final = json.loads(events[-2][6:])
    assert final["usage"]["prompt_tokens_details"]["cached_tokens"] >= 0
    assert final["choices"][0]["delta"]["sources"]


@pytest.mark.slow
def test_client_disconnect_stops_generation(server):
    before = metric(server, "ragkit_client_disconnects_total")
    tokens_before = metric(server, "ragkit_completion_tokens_total")
    with httpx.stream(
        "POST", server.url + "/v1/chat/completions", json=ask(48, True), headers=AUTH, timeout=600
    ) as response:
        for line in response.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                break  # the first generated text: leave mid-answer
    wait_for(lambda: metric(server, "ragkit_client_disconnects_total") == before + 1)
    wait_for(lambda: metric(server, "ragkit_generations_in_progress") == 0)
    # A stopped generation finishes no answer, so its tokens are not counted as completed.
    assert metric(server, "ragkit_completion_tokens_total") == tokens_before
    after = httpx.post(
        server.url + "/v1/chat/completions", json=ask(4, False), headers=AUTH, timeout=600
    )
    assert after.status_code == 200 and after.json()["choices"][0]["message"]["content"]
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


@pytest.mark.slow
def test_full_queue_answers_503(server):
    """One generating and one waiting fill this server (max_concurrency=1, max_queue=1); of a
    burst sent at once, the rest are refused at once rather than left waiting."""
    burst = 6

    def send(_: int) -> httpx.Response:
        return httpx.post(
            server.url + "/v1/chat/completions", json=ask(24, False), headers=AUTH, timeout=600
        )

    with ThreadPoolExecutor(burst) as pool:
        responses = list(pool.map(send, range(burst)))
    refused = [r for r in responses if r.status_code == 503]
    answered = [r for r in responses if r.status_code == 200]
    assert len(refused) + len(answered) == burst, [r.status_code for r in responses]
    assert len(answered) >= 2 and refused, [r.status_code for r in responses]
    assert all(r.json()["error"]["code"] == "queue_full" for r in refused)
    assert all(r.headers["retry-after"] == "1" for r in refused)
    assert metric(server, "ragkit_http_errors_total", '{status="503"}') >= len(refused)


# ---- refusals (no generation) --------------------------------------------------------------


def test_missing_or_wrong_key_is_401(server):
    from openai import AuthenticationError, OpenAI

    wrong = OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(AuthenticationError) as caught:
        wrong.chat.completions.create(model="naive", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key"
    bare = httpx.get(server.url + "/v1/models")
    assert bare.status_code == 401 and set(bare.json()["error"]) == {
        "message",
        "type",
        "param",
        "code",
    }
    assert httpx.get(server.url + "/metrics").status_code == 401
    assert httpx.get(server.url + "/health").status_code == 200


def test_models_lists_the_pipelines(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["naive"]
    assert client.models.retrieve("naive").id == "naive"


def test_bad_requests_get_openai_errors(client, server):
    from openai import BadRequestError, NotFoundError

    with pytest.raises(NotFoundError) as caught:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "model_not_found" and caught.value.body["param"] == "model"
    with pytest.raises(BadRequestError) as caught:
        client.chat.completions.create(
            model="naive", messages=[{"role": "user", "content": "hi"}], max_tokens=65
        )
    assert caught.value.body["param"] == "max_tokens" and "64" in caught.value.body["message"]
    with pytest.raises(BadRequestError) as caught:
        client.chat.completions.create(model="naive", messages=[])
    assert caught.value.body["param"] == "messages"
    with pytest.raises(BadRequestError) as caught:
        client.chat.completions.create(
            model="naive", messages=[{"role": "assistant", "content": "hello"}]
        )
    assert "role 'user'" in caught.value.body["message"]

    missing = httpx.post(server.url + "/v1/chat/completions", json={"model": "naive"}, headers=AUTH)
    assert missing.status_code == 400
    assert missing.json()["error"] == {
        "message": "messages: required",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "invalid_value",
    }
    garbled = httpx.post(
        server.url + "/v1/chat/completions",
        content=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert garbled.status_code == 400 and "not valid JSON" in garbled.json()["error"]["message"]
    wrong_type = httpx.post(server.url + "/v1/chat/completions", json=ask(-1, False), headers=AUTH)
    assert wrong_type.status_code == 400 and wrong_type.json()["error"]["param"] == "max_tokens"
    unknown = httpx.get(server.url + "/v1/nothing", headers=AUTH)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


def test_body_too_large_is_413(server):
    big = ask(4, False, messages=[{"role": "user", "content": "x" * 30_000}])
    response = httpx.post(server.url + "/v1/chat/completions", json=big, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit holds while the body streams in
        for _ in range(30):
            yield b"x" * 1000

    streamed = httpx.post(
        server.url + "/v1/chat/completions",
        content=chunks(),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413


def test_metrics_are_prometheus_text(server):
    from prometheus_client.parser import text_string_to_metric_families

    httpx.get(server.url + "/v1/models")  # a 401 to count
    text = httpx.get(server.url + "/metrics", headers=AUTH).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "ragkit_http_requests",
        "ragkit_http_errors",
        "ragkit_chat_latency_seconds",
        "ragkit_time_to_first_token_seconds",
        "ragkit_cached_token_ratio",
        "ragkit_queue_depth",
    ):
        assert name in families, name
    assert families["ragkit_chat_latency_seconds"].type == "histogram"
    errors = {s.labels["status"]: s.value for s in families["ragkit_http_errors"].samples}
    assert errors["401"] >= 1


def test_chat_page_is_served(server):
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and 'id="question"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(server.url + "/static/chat.js").status_code == 200


@pytest.mark.slow
def test_prompts_are_counted_with_the_generator_tokenizer(local_generator):
    from ragkit.generation.openai_compat import OpenAICompatibleGenerator
    from ragkit.serve.limits import approximate_tokens, token_counter

    count = token_counter(local_generator)
    assert count("hello world") == 2  # Qwen's tokenizer: "hello", " world"
    assert approximate_tokens("hello world") == 3
    remote = OpenAICompatibleGenerator(base_url="http://127.0.0.1:9", model="x")
    assert token_counter(remote)("瓦罗角" * 4) == approximate_tokens("瓦罗角" * 4) == 9


def test_metrics_have_in_flight_and_queued_gauges(server):
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(server.url + "/metrics", headers=AUTH).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("ragkit_requests_in_flight", "ragkit_requests_queued", "ragkit_max_concurrency"):
        assert families[name].type == "gauge"
        assert families[name].samples[0].labels == {"generator": "naive"}
    assert families["ragkit_max_concurrency"].samples[0].value >= 1
