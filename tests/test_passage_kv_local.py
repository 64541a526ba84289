"""Passage KV reuse (`kv_reuse: passages`) with the real packaged model: passages found again at
other ranks, new passages computed exactly in their prompt, answers that do not depend on what
was stored when passages are computed alone, exactness where everything is recomputed,
batching, cancellation, the warm-up command and the server's counters."""

from __future__ import annotations

import threading

import pytest
from typer.testing import CliRunner

from ragkit.generation.cancel import cancellable
from ragkit.generation.local import LocalGenerator
from ragkit.generation.scheduler import GenerationCancelled
from ragkit.prompting import PromptAssembler
from ragkit.types import Chunk, Prompt, Retrieved

pytestmark = pytest.mark.slow

TEXTS = [
    "The Kestrel Bridge in Harwick opened in 1931 and spans the river Lune with three steel "
    "arches. It was designed by the engineer Margaret Ellory, who also built the town's "
    "railway station. The bridge carried trams until 1958 and was restored in 2004.",
    "Harwick's town council meets every second Tuesday in the old corn exchange. The council "
    "has eleven members and its current leader is Tomas Reyes, elected in 2021. It manages "
    "the parks, the market and the two public libraries.",
    "The river Lune floods most winters near Harwick; in 2015 the water rose 4.2 metres above "
    "its usual level and closed the Kestrel Bridge for nine days. A flood wall finished in "
    "2019 now protects the market square.",
    "哈威克镇的图书馆建于1902年，藏书约八万册。图书馆每周开放六天，周一闭馆。馆长是林晓梅，"
    "她在2018年发起了儿童夜读活动，每月第一个周五举行。",
]
CHUNKS = [
    Chunk(f"c{i}", f"d{i}", text, 0, len(text), {"source": f"harwick-{i}.md"})
    for i, text in enumerate(TEXTS)
]
ASSEMBLER = PromptAssembler()


def prompt(question: str, order: tuple[int, ...]) -> Prompt:
    return ASSEMBLER.assemble(question, [Retrieved(CHUNKS[i], 1.0, r) for r, i in enumerate(order)])


def body_tokens(gen: LocalGenerator, p: Prompt) -> list[int]:
    _, plan = gen._tokenize(p)
    return [s.end - s.body for s in plan.passages]


@pytest.mark.parametrize("misses", ["in_prompt", "alone"])
def test_passages_are_found_again_at_other_ranks(local_generator, misses):
    gen = LocalGenerator(kv_reuse="passages", passage_misses=misses, max_new_tokens=32)
    first = gen.invoke(prompt("Who designed the Kestrel Bridge?", (0, 1, 2)))
    assert (first.usage.passage_hits, first.usage.passage_misses) == (0, 3)
    assert first.usage.cached_prompt_tokens == 0
    assert "Ellory" in first.text
    later_prompt = prompt("How high did the river Lune rise in 2015?", (2, 0, 1))
    later = gen.invoke(later_prompt)
    assert (later.usage.passage_hits, later.usage.passage_misses) == (3, 0)
    placed = sum(n - gen.passage_recompute_tokens for n in body_tokens(gen, later_prompt))
    reused = placed - round(gen.passage_recompute_share * placed)
    # The instruction's whole blocks come from the prefix cache on top of the passages.
    assert later.usage.cached_prompt_tokens >= reused
    assert later.usage.cached_prompt_tokens < later.usage.prompt_tokens
    stats = gen.passage_store.stats()
    # Computed alone, the encoding context is stored too.
    assert (stats.hits, stats.misses, stats.entries) == (3, 3, 3 if misses == "in_prompt" else 4)
    # Not asked of `in_prompt`: passage 3 of the first prompt moves to rank 1, and stored as
    # computed in that prompt its KV still carries attention to two passages that no longer
    # precede it; here the 0.5B model then misses the figure. How often that costs an answer is
    # measured by benchmarks/kv_passages_quality.py.
    if misses == "alone":
        assert "4.2" in later.text


def test_passages_computed_alone_make_answers_independent_of_what_was_stored(local_generator):
    p = prompt("Who is the current leader of Harwick's town council?", (1, 3, 0))
    cold = LocalGenerator(kv_reuse="passages", passage_misses="alone", max_new_tokens=24)
    warm = LocalGenerator(kv_reuse="passages", passage_misses="alone", max_new_tokens=24)
    warm.precompute_passages([prompt("Anything?", (0, 3)), prompt("Anything?", (1,))])
    a, b = cold.invoke(p), warm.invoke(p)
    assert (a.usage.passage_misses, b.usage.passage_hits) == (3, 3)
    assert a.text == b.text
    assert "Reyes" in a.text


def test_recomputing_every_token_is_full_prefill_in_float32():
    off = LocalGenerator(dtype="float32", kv_reuse="off", max_new_tokens=16)
    full = LocalGenerator(
        dtype="float32", kv_reuse="passages", passage_recompute_tokens=100_000, max_new_tokens=16
    )
    in_prompt = LocalGenerator(dtype="float32", kv_reuse="passages", max_new_tokens=16)
    for p in (prompt("When did the bridge open?", (0, 2)), prompt("图书馆哪天闭馆？", (3, 1))):
        expected = off.invoke(p)
        got = full.invoke(p)
        assert got.text == expected.text
        assert got.usage.cached_prompt_tokens == 0 and got.usage.passage_misses == 0
        # New passages are computed in their prompt, so the first answer is full prefill's.
        first = in_prompt.invoke(p)
        assert first.usage.passage_misses == 2 and first.text == expected.text


def test_batch_and_concurrent_callers_get_what_each_gets_alone():
    """float32, where decoding together is exactly decoding alone; passages already stored."""
    gen = LocalGenerator(dtype="float32", kv_reuse="passages", max_new_tokens=12)
    prompts = [
        prompt("Who designed the bridge?", (0, 1)),
        prompt("When does the library close?", (3, 0)),
        prompt("What protects the market square?", (2, 1, 0)),
    ]
    gen.batch(prompts)  # stores every passage, so each call below places the same ones
    alone = [gen.invoke(p).text for p in prompts]
    batched = gen.batch(prompts)
    assert [a.text for a in batched] == alone
    assert all(a.usage.passage_misses == 0 for a in batched)
    results: dict[int, str] = {}

    def call(i: int) -> None:
        results[i] = gen.invoke(prompts[i]).text

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(prompts))] == alone


class CancelAfter(threading.Event):
    """Reads as set from its `n`-th check on: a caller giving up part-way through a prefill."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.checks = n, 0

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks >= self.n or super().is_set()


def test_cancelling_mid_prefill_leaves_only_whole_passages_stored(local_generator):
    options = {"kv_reuse": "passages", "passage_misses": "alone", "max_new_tokens": 8}
    gen = LocalGenerator(prefill_block_tokens=16, **options)
    p = prompt("Who designed the Kestrel Bridge?", (0, 1, 2, 3))
    with cancellable(CancelAfter(9)), pytest.raises(GenerationCancelled):
        gen.invoke(p)
    whole = set(body_tokens(gen, p))
    _, plan = gen._tokenize(p)
    sizes = {gen.passage_store.get(k, count=False).tokens for k in gen.passage_store.lru_keys()}
    assert sizes <= whole | {len(plan.context)}
    assert len(gen.passage_store) < 5  # it stopped before every passage was stored
    resumed = gen.invoke(p)
    assert resumed.text == LocalGenerator(**options).invoke(p).text
    assert local_generator.loaded().scheduler().active == 0


def test_a_prompt_cancelled_mid_prefill_stores_none_of_its_new_passages(local_generator):
    """Passages computed in their prompt are stored only once the prompt's prefill is whole."""
    gen = LocalGenerator(kv_reuse="passages", max_new_tokens=8, prefill_block_tokens=16)
    p = prompt("Who designed the Kestrel Bridge?", (0, 1, 2, 3))
    with cancellable(CancelAfter(3)), pytest.raises(GenerationCancelled):
        gen.invoke(p)
    assert len(gen.passage_store) == 0
    resumed = gen.invoke(p)
    assert (resumed.usage.passage_hits, resumed.usage.passage_misses) == (0, 4)
    fresh = LocalGenerator(kv_reuse="passages", max_new_tokens=8, prefill_block_tokens=16)
    assert resumed.text == fresh.invoke(p).text
    assert len(gen.passage_store) == 4
    assert local_generator.loaded().scheduler().active == 0


def test_kv_warm_writes_passages_a_later_generator_reads(bundled_spec, tmp_path):
    from ragkit import build
    from ragkit.cli import app

    folder = tmp_path / "kv"
    location = bundled_spec.store.location
    result = CliRunner().invoke(
        app,
        ["kv", "warm", "--store", location, "--dir", str(folder), "--limit", "3"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "3 chunks, 3 passages computed, 0 already there; 3 files" in result.output
    # One chunk more: the three stored are read back, only the new one is computed.
    again = CliRunner().invoke(
        app, ["kv", "warm", "--store", location, "--dir", str(folder), "--limit", "4"]
    )
    assert "4 chunks, 1 passages computed, 3 already there; 4 files" in again.output

    chunks = build.store(bundled_spec).get_chunks()[:2]
    reader = LocalGenerator(kv_reuse="passages", passage_cache_dir=str(folder), max_new_tokens=4)
    hits = [Retrieved(c, 1.0, r) for r, c in enumerate(chunks, start=1)]
    answer = reader.invoke(ASSEMBLER.assemble("Who founded Varrow Point?", hits))
    assert (answer.usage.passage_hits, answer.usage.passage_misses) == (2, 0)
    assert answer.usage.cached_prompt_tokens > 0


def test_kv_warm_needs_a_folder(bundled_spec):
    from ragkit.cli import app

    result = CliRunner().invoke(app, ["kv", "warm", "--store", bundled_spec.store.location])
    assert result.exit_code == 1
    assert "give --dir, or set generator.passage_cache_dir" in result.output


def test_server_metrics_count_passage_lookups(bundled_spec):
    import httpx

    from ragkit import build
    from ragkit.serve.app import ServeSettings, create_app
    from ragkit.serve.background import BackgroundServer

    gen = LocalGenerator(kv_reuse="passages", max_new_tokens=8)
    rag = build.pipeline(bundled_spec).model_copy(update={"generator": gen})
    with BackgroundServer(create_app({"naive": rag}, ServeSettings())) as server:
        for question in ("Who founded Varrow Point?", "Who founded Varrow Point, and when?"):
            reply = httpx.post(
                server.url + "/v1/chat/completions",
                json={"model": "naive", "messages": [{"role": "user", "content": question}]},
                timeout=600,
            )
            assert reply.status_code == 200, reply.text
        text = httpx.get(server.url + "/metrics").text
    values = {
        line.split(" ")[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ragkit_passage_kv")
    }
    stats = gen.passage_store.stats()
    assert values["ragkit_passage_kv_hits_total"] == stats.hits > 0
    assert values["ragkit_passage_kv_misses_total"] == stats.misses > 0
    assert values["ragkit_passage_kv_evictions_total"] == 0
    assert values['ragkit_passage_kv_bytes{generator="naive"}'] == gen.passage_store.total_bytes
    assert values['ragkit_passage_kv_entries{generator="naive"}'] == len(gen.passage_store)
