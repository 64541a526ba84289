"""Message content as the official `openai` client types it, against a real uvicorn server on
127.0.0.1 over a real index, answered by the scripted generator (so the prompt the pipeline
built can be read back): text parts are joined in order, any other part type is refused by
name, and tool calling is refused. The same request with the packaged model is in
test_serve_api.py (slow)."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI
from openai.types.chat import (
    ChatCompletionContentPartImageParam,
    ChatCompletionContentPartInputAudioParam,
    ChatCompletionContentPartTextParam,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from ragkit import build
from ragkit.generation.scripted import ScriptedGenerator
from ragkit.serve.app import ServeSettings, create_app
from ragkit.serve.background import BackgroundServer

FIRST, SECOND = "Who has been the harbour master", " of Varrow Point since 2017?"
TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}


def text(value: str) -> ChatCompletionContentPartTextParam:
    return {"type": "text", "text": value}


IMAGE: ChatCompletionContentPartImageParam = {
    "type": "image_url",
    "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
}
AUDIO: ChatCompletionContentPartInputAudioParam = {
    "type": "input_audio",
    "input_audio": {"data": "UklGRg==", "format": "wav"},
}


@pytest.fixture(scope="module")
def scripted():
    return ScriptedGenerator()


@pytest.fixture(scope="module")
def client(scripted_spec, scripted):
    rag = build.pipeline(scripted_spec).with_generator(scripted)
    with BackgroundServer(create_app([rag], ServeSettings(max_tokens_limit=64))) as server:
        yield OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=60)


def refused(client: OpenAI, **request) -> openai.BadRequestError:
    request.setdefault("model", "naive")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**request)
    assert caught.value.status_code == 400
    return caught.value


def test_text_parts_are_joined_in_order(client, scripted):
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": [text("Answer briefly.")]},
        {"role": "user", "content": [text(FIRST), text(SECOND)]},
    ]
    reply = client.chat.completions.create(model="naive", messages=messages)
    prompt = scripted.prompts[-1]
    assert prompt.question == FIRST + SECOND
    assert reply.choices[0].message.content == scripted.reply_for(prompt)
    assert reply.choices[0].message.model_extra["sources"]

    pieces = client.chat.completions.create(model="naive", messages=messages, stream=True)
    streamed = "".join(p.choices[0].delta.content or "" for p in pieces if p.choices)
    assert scripted.prompts[-1].question == FIRST + SECOND
    assert streamed.strip() == reply.choices[0].message.content


def test_earlier_turns_given_as_parts_become_the_history(client, scripted):
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": [text("Who runs"), text(" the ferry?")]},
        {"role": "assistant", "content": [text("Saltreach Ferries [1].")]},
        {"role": "user", "content": [text("When was it founded?")]},
    ]
    client.chat.completions.create(model="naive", messages=messages)
    prompt = scripted.prompts[-1]
    assert prompt.question == "When was it founded?"
    assert "Who runs the ferry?" in prompt.user_text
    assert "Saltreach Ferries [1]." in prompt.user_text


@pytest.mark.parametrize(("part", "kind"), [(IMAGE, "image_url"), (AUDIO, "input_audio")])
def test_a_part_that_is_not_text_is_refused_by_name(client, scripted, part, kind):
    asked = len(scripted.prompts)
    error = refused(client, messages=[{"role": "user", "content": [text(FIRST), part]}])
    body = error.body
    assert isinstance(body, dict)
    assert body["param"] == "messages.0.content"
    assert body["code"] == "unsupported_value"
    assert f"part 1 has type {kind!r}" in body["message"]
    assert "takes text only" in body["message"]
    assert "pydantic" not in body["message"] and "base64" not in body["message"]
    assert len(scripted.prompts) == asked  # nothing was generated


@pytest.mark.parametrize(
    ("request_fields", "param"),
    [
        ({"tools": [TOOL]}, "tools"),
        ({"tools": [TOOL], "tool_choice": "required"}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"functions": [TOOL["function"]]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
    ],
)
def test_tool_calling_is_refused(client, request_fields, param):
    error = refused(client, messages=[{"role": "user", "content": FIRST}], **request_fields)
    body = error.body
    assert isinstance(body, dict)
    assert body["param"] == param and body["code"] == "unsupported_parameter"
    assert "tool calls are not supported" in body["message"]


def test_tool_messages_are_refused(client):
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": FIRST},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        {"role": "user", "content": SECOND},
    ]
    body = refused(client, messages=messages).body
    assert isinstance(body, dict)
    assert body["param"] == "messages.1.tool_calls"
    assert "tool calls are not supported" in body["message"]
    body = refused(client, messages=[messages[0], messages[2], messages[3]]).body
    assert isinstance(body, dict)
    assert body["param"] == "messages.1.role" and "'tool'" in body["message"]


def test_no_tools_offered_is_a_plain_request(client):
    reply = client.chat.completions.create(
        model="naive", messages=[{"role": "user", "content": FIRST}], tools=[], tool_choice="none"
    )
    assert reply.choices[0].message.content
