// Chat page: sends the conversation to /v1/chat/completions with stream=true and renders the
// server-sent events as they arrive; the last event carries the sources and token usage.
"use strict";

const $ = (id) => document.getElementById(id);
const history = [];
let controller = null;

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function setStatus(text) {
  $("status").textContent = text;
}

async function loadModels() {
  try {
    const res = await fetch("/v1/models", { headers: headers() });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error ? body.error.message : res.statusText);
    const select = $("model");
    select.replaceChildren();
    for (const m of body.data) {
      const opt = document.createElement("option");
      opt.value = m.id;
      opt.textContent = m.id;
      select.append(opt);
    }
    setStatus("");
  } catch (err) {
    setStatus(`Could not list pipelines: ${err.message}`);
  }
}

function renderSources(list, sources) {
  list.replaceChildren();
  for (const s of sources) {
    const li = document.createElement("li");
    li.value = s.number;
    li.className = s.cited ? "source cited" : "source";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `${s.source} (score ${s.score.toFixed(3)})`;
    const snippet = document.createElement("span");
    snippet.className = "snippet";
    snippet.textContent = s.text;
    li.append(name, snippet);
    list.append(li);
  }
}

function renderUsage(el, usage, seconds) {
  if (!usage) return;
  const cached = usage.prompt_tokens_details ? usage.prompt_tokens_details.cached_tokens : 0;
  el.textContent = `${usage.prompt_tokens} prompt tokens (${cached} cached), ` +
    `${usage.completion_tokens} generated, ${seconds.toFixed(1)} s`;
}

// Yields the JSON payload of each `data:` event in an SSE byte stream.
async function* events(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data:")) yield line.slice(5).trim();
      }
    }
  }
}

async function ask(question) {
  const turn = $("turn").content.firstElementChild.cloneNode(true);
  turn.querySelector(".question").textContent = question;
  const answer = turn.querySelector(".answer");
  $("log").append(turn);
  turn.scrollIntoView({ block: "end" });
  history.push({ role: "user", content: question });
  controller = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  setStatus("Thinking…");
  const started = performance.now();
  let text = "";
  try {
    const res = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(),
      signal: controller.signal,
      body: JSON.stringify({
        model: $("model").value,
        messages: history,
        stream: true,
        max_tokens: Number($("max-tokens").value) || undefined,
      }),
    });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new Error(body.error ? body.error.message : `HTTP ${res.status}`);
    }
    for await (const data of events(res.body)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const choice = chunk.choices[0];
      if (choice && choice.delta.content) {
        if (!text) setStatus("Answering…");
        text += choice.delta.content;
        answer.textContent = text;
      }
      if (choice && choice.delta.sources) renderSources(turn.querySelector(".sources"), choice.delta.sources);
      if (chunk.usage) renderUsage(turn.querySelector(".usage"), chunk.usage, (performance.now() - started) / 1000);
    }
    answer.dataset.state = "done";
    history.push({ role: "assistant", content: text });
    setStatus("");
  } catch (err) {
    history.pop();
    answer.dataset.state = "error";
    answer.textContent = text + (err.name === "AbortError" ? " [stopped]" : `\n${err.message}`);
    setStatus(err.name === "AbortError" ? "Stopped." : "The request failed.");
  } finally {
    controller = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = sessionStorage.getItem("ragkit-api-key") || "";
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem("ragkit-api-key", $("api-key").value.trim());
    loadModels();
  });
  $("ask").addEventListener("submit", (event) => {
    event.preventDefault();
    const question = $("question").value.trim();
    if (!question || controller) return;
    $("question").value = "";
    ask(question);
  });
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("ask").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => controller && controller.abort());
  $("clear").addEventListener("click", () => {
    history.length = 0;
    $("log").replaceChildren();
  });
  loadModels();
});
