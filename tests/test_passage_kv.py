"""Passage KV reuse without the packaged model: the store's bounds and counts, where passages lie
in a prompt, and the rotate-place-recompute prefill on a small randomly initialised Qwen2 in
float32, where what is promised exact can be checked to rounding."""

from __future__ import annotations

import random
import threading
from types import SimpleNamespace

import pytest
import torch

from ragkit.generation.passage_encode import PassageReuse, encode_tokens
from ragkit.generation.passage_plan import PassageSpan, PromptPlan, plan_prompt
from ragkit.generation.passage_prefill import Rotator, prefill_passages
from ragkit.generation.passage_store import PassageKV, PassageKVStore, passage_key
from ragkit.prompting import PromptAssembler
from ragkit.types import Chunk, Prompt, Retrieved

# ---------------------------------------------------------------- the store


def entry(tokens: int, fill: float = 0.0, layers: int = 2) -> PassageKV:
    keys = torch.full((layers, 2, tokens, 4), fill)
    return PassageKV(keys, keys.clone(), base=3)


def test_store_counts_hits_misses_and_evictions_and_keeps_the_byte_bound():
    one = entry(8).nbytes
    store = PassageKVStore(max_bytes=3 * one + one // 2)  # room for three, not four
    assert store.get("a") is None
    store.put("a", entry(8))
    assert store.get("a") is not None
    assert (store.stats().hits, store.stats().misses) == (1, 1)
    for key in "bcd":
        evicted = store.put(key, entry(8))
        assert store.total_bytes <= store.max_bytes
    assert evicted == 1  # the fourth pushed out the least recently used, "a"
    assert store.lru_keys() == ["b", "c", "d"]
    store.get("b")  # touched: "c" is now the oldest
    store.put("e", entry(8))
    assert store.lru_keys() == ["d", "b", "e"]
    assert store.stats().evictions == 2
    assert store.stats().bytes == store.total_bytes == 3 * one


def test_store_bound_holds_over_a_long_run_of_mixed_sizes():
    store = PassageKVStore(max_bytes=entry(40).nbytes)
    rng = random.Random(0)
    evicted = 0
    for n in range(300):
        evicted += store.put(f"k{n}", entry(rng.choice([3, 8, 17, 40])))
        assert store.total_bytes <= store.max_bytes
        assert store.total_bytes == sum(store.get(k, count=False).nbytes for k in store.lru_keys())
    assert evicted == store.stats().evictions > 0
    assert store.stats().entries == len(store) >= 1


def test_store_skips_an_entry_larger_than_the_budget_and_replaces_a_key():
    store = PassageKVStore(max_bytes=entry(8).nbytes)
    assert store.put("big", entry(9)) == 0 and len(store) == 0
    store.put("a", entry(4, 1.0))
    store.put("a", entry(8, 2.0))
    assert len(store) == 1 and store.total_bytes == entry(8).nbytes
    assert float(store.get("a").keys[0, 0, 0, 0]) == 2.0
    store.clear()
    assert store.stats() == type(store.stats())(0, 0, 0, 0, 0, store.max_bytes)
    with pytest.raises(ValueError, match="-1"):
        PassageKVStore(max_bytes=-1)


def test_keys_name_model_context_and_tokens():
    base = passage_key("m|bf16", [1, 2], [3, 4])
    assert base == passage_key("m|bf16", [1, 2], [3, 4])
    assert base != passage_key("m|float32", [1, 2], [3, 4])
    assert base != passage_key("m|bf16", [1], [2, 3, 4])  # not just the concatenation
    assert base != passage_key("m|bf16", [1, 2], [3, 5])


# ---------------------------------------------------------------- prompts and plans


class CharTokenizer:
    """One token per character: offsets in the plan can be read off the text."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> SimpleNamespace:
        return SimpleNamespace(input_ids=[ord(c) for c in text])


def chunk(i: int, text: str) -> Retrieved:
    c = Chunk(f"c{i}", f"d{i}", text, 0, len(text), {"source": f"/docs/file{i}.md"})
    return Retrieved(c, 1.0, i)


def test_segments_mark_the_part_that_does_not_depend_on_the_number():
    assembler = PromptAssembler()
    hits = [chunk(i, f"Passage text {i}.") for i in range(12)]
    first = assembler.segments(hits[:1], start=3)[0]
    later = assembler.segments(hits[:1], start=12)[0]
    assert first.text.startswith("[3]") and later.text.startswith("[12]")
    assert first.text[first.body_start :] == later.text[later.body_start :]
    assert first.text[first.body_start :].startswith("] (file0.md)")
    plain = PromptAssembler(passage_template="{text}\n").segments(hits[:1])[0]
    assert plain.body_start == 0


def test_plan_places_each_passage_and_its_number():
    assembler = PromptAssembler()
    prompt = assembler.assemble("Who?", [chunk(0, "Alpha beta."), chunk(1, "Gamma delta.")])
    rendered = f"<s>{prompt.system}|{prompt.user_text}</s>"
    plan = plan_prompt(CharTokenizer(), rendered, prompt)
    assert plan is not None
    text = "".join(map(chr, plan.ids))
    assert text == rendered
    assert "".join(map(chr, plan.context)) == f"<s>{prompt.system}|"
    assert text[: plan.prefix_end].endswith(prompt.prefix)
    for span, segment in zip(plan.passages, prompt.segments, strict=True):
        assert text[span.start : span.end] == segment.text
        assert text[span.body : span.end] == segment.text[segment.body_start :]
    assert plan.passages[0].start == plan.prefix_end
    assert plan.passages[0].end == plan.passages[1].start
    assert text[plan.suffix_start :] == prompt.suffix + "</s>"


def test_no_plan_without_passages_or_when_the_template_rewrites_the_text():
    tokenizer = CharTokenizer()
    assert plan_prompt(tokenizer, "x", Prompt.plain("hello")) is None
    prompt = PromptAssembler().assemble("Who?", [chunk(0, "Alpha.")])
    assert plan_prompt(tokenizer, prompt.user_text.upper(), prompt) is None


# ---------------------------------------------------------------- prefill on a small model

LAYERS = 2


@pytest.fixture(scope="module")
def loaded():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=96,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    model = Qwen2ForCausalLM(config).eval()
    return SimpleNamespace(model=model, lock=threading.Lock())


def never() -> bool:
    return False


def build_plan(context: int, prefix: int, passages: list[tuple[int, int]], suffix: int, seed=1):
    """A plan over random ids: `context` tokens (a prefix of the prompt), `prefix` more, then
    passages of (head, body) tokens, then `suffix` tokens; passage bodies come from `seed`."""
    rng = random.Random(seed)
    ids = [rng.randrange(96) for _ in range(context + prefix)]
    spans = []
    for head, body in passages:
        start = len(ids)
        ids += [rng.randrange(96) for _ in range(head)]
        ids += [rng.randrange(96) for _ in range(body)]
        spans.append(PassageSpan(start, start + head, len(ids)))
    end = len(ids)
    ids += [rng.randrange(96) for _ in range(suffix)]
    return PromptPlan(tuple(ids), tuple(ids[:context]), context + prefix, tuple(spans), end)


def full_forward(loaded, ids):
    from transformers import DynamicCache

    cache = DynamicCache(config=loaded.model.config)
    with torch.inference_mode():
        out = loaded.model(input_ids=torch.tensor([list(ids)]), cache=cache, use_cache=True)
    return out.logits[0, -1], cache


def run(loaded, plan, store, recompute, prefix_cache=None, cancelled=never, share=0.0, alone=False):
    reuse = PassageReuse(
        store, "tiny|float32", recompute, recompute_share=share, misses_in_prompt=not alone
    )
    with torch.inference_mode():
        return prefill_passages(loaded, plan, reuse, prefix_cache, 8, cancelled)


def test_rotating_keys_moves_them_to_another_position(loaded):
    from transformers import DynamicCache

    ids = torch.tensor([[5, 17, 42, 8, 77, 3]])
    by_start = {}
    for start in (0, 37):
        cache = DynamicCache(config=loaded.model.config)
        positions = torch.arange(start, start + ids.shape[1])[None]
        with torch.inference_mode():
            loaded.model(input_ids=ids, position_ids=positions, cache=cache, use_cache=True)
        by_start[start] = cache.layers
    rotate = Rotator(loaded.model)
    for at_0, at_37 in zip(by_start[0], by_start[37], strict=True):
        assert not torch.allclose(at_0.keys, at_37.keys, atol=1e-3)
        torch.testing.assert_close(rotate(at_0.keys, 37), at_37.keys, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(rotate(at_37.keys, -37), at_0.keys, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(at_0.values, at_37.values, atol=1e-5, rtol=1e-4)


def test_recomputing_every_passage_token_is_full_prefill(loaded):
    plan = build_plan(context=5, prefix=9, passages=[(2, 20), (3, 15), (1, 30)], suffix=6)
    done = run(loaded, plan, PassageKVStore(1 << 24), recompute=10_000)
    logits, cache = full_forward(loaded, plan.ids)
    torch.testing.assert_close(done.logits, logits, atol=1e-4, rtol=1e-4)
    for ours, full in zip(done.kv.layers, cache.layers, strict=True):
        torch.testing.assert_close(ours.keys, full.keys, atol=1e-4, rtol=1e-4)
    assert done.reused == 0


def test_a_passage_right_after_the_context_is_reused_exactly(loaded):
    """Computed alone, its real context is the one it was encoded after, so reuse without
    recompute is exact."""
    plan = build_plan(context=6, prefix=0, passages=[(0, 40)], suffix=5)
    store = PassageKVStore(1 << 24)
    run(loaded, plan, store, recompute=0, alone=True)  # computes and stores the passage
    done = run(loaded, plan, store, recompute=0, alone=True)
    assert (done.hits, done.misses, done.reused) == (1, 0, 6 + 40)  # context and passage
    logits, _ = full_forward(loaded, plan.ids)
    torch.testing.assert_close(done.logits, logits, atol=1e-4, rtol=1e-4)


def test_a_passage_reused_at_a_new_position_and_with_a_new_number(loaded):
    """A passage stored from one prompt is found in another where it lands elsewhere; the
    placed keys are the stored ones rotated to the new position."""
    first = build_plan(context=4, prefix=3, passages=[(1, 24)], suffix=3)
    store = PassageKVStore(1 << 24)
    run(loaded, first, store, recompute=4)
    body = first.ids[first.passages[0].body : first.passages[0].end]
    ids = list(first.ids[:4]) + [9] * 20 + [11, 12] + list(body) + [1, 2, 3]
    span = PassageSpan(24, 26, 26 + len(body))
    later = PromptPlan(tuple(ids), first.context, 24, (span,), span.end)
    done = run(loaded, later, store, recompute=4)
    assert (done.hits, done.misses) == (1, 0)
    assert done.reused == len(body) - 4
    stored = store.get(store.lru_keys()[-1], count=False)
    keys = done.kv.layers[1].keys[0]
    expected = Rotator(loaded.model)(stored.keys[1], span.body - stored.base)
    torch.testing.assert_close(keys[:, span.body + 4 : span.end], expected[:, 4:])
    # The recomputed first rows are not the stored ones: they saw the new prompt.
    assert not torch.allclose(keys[:, span.body : span.body + 4], expected[:, :4], atol=1e-3)


def test_computed_alone_hits_give_the_same_logits_as_misses(loaded):
    plan = build_plan(context=5, prefix=7, passages=[(2, 18), (2, 25), (2, 12)], suffix=4)
    store = PassageKVStore(1 << 24)
    cold = run(loaded, plan, store, recompute=4, alone=True)
    warm = run(loaded, plan, store, recompute=4, alone=True)
    assert (cold.hits, cold.misses, warm.hits, warm.misses) == (0, 3, 3, 0)
    assert cold.reused == 0
    assert warm.reused == (18 - 4) + (25 - 4) + (12 - 4)
    assert torch.equal(cold.logits, warm.logits)


def test_a_prompt_of_new_passages_is_full_prefill_and_stores_them_as_computed(loaded):
    plan = build_plan(context=5, prefix=7, passages=[(2, 18), (2, 25), (2, 12)], suffix=4)
    store = PassageKVStore(1 << 24)
    cold = run(loaded, plan, store, recompute=4, share=0.1)
    assert (cold.hits, cold.misses, cold.reused) == (0, 3, 0)
    logits, cache = full_forward(loaded, plan.ids)
    torch.testing.assert_close(cold.logits, logits, atol=1e-4, rtol=1e-4)
    assert len(store) == 3  # the passages, nothing computed on the side
    for span in plan.passages:
        body = plan.ids[span.body : span.end]
        [key] = [k for k in store.lru_keys() if store.get(k, count=False).tokens == len(body)]
        stored = store.get(key, count=False)
        assert stored.base == span.body
        for layer, full in enumerate(cache.layers):
            torch.testing.assert_close(
                stored.keys[layer], full.keys[0, :, span.body : span.end], atol=1e-4, rtol=1e-4
            )
    warm = run(loaded, plan, store, recompute=4)
    assert (warm.hits, warm.misses) == (3, 0)
    assert warm.reused == (18 - 4) + (25 - 4) + (12 - 4)
    # Placed where they were computed, after the same passages, the stored rows are exact.
    torch.testing.assert_close(warm.logits, logits, atol=1e-3, rtol=1e-3)


def test_a_stored_passage_and_a_new_one_in_one_prompt(loaded):
    first = build_plan(context=4, prefix=3, passages=[(1, 24)], suffix=3, seed=1)
    store = PassageKVStore(1 << 24)
    run(loaded, first, store, recompute=4)
    body = list(first.ids[first.passages[0].body : first.passages[0].end])
    fresh = [(7 * i) % 96 for i in range(30)]
    ids = list(first.ids[:4]) + [9] * 5 + [11] + fresh + [12] + body + [1, 2, 3]
    spans = (PassageSpan(9, 10, 40), PassageSpan(40, 41, 41 + len(body)))
    later = PromptPlan(tuple(ids), first.context, 9, spans, spans[1].end)
    done = run(loaded, later, store, recompute=4)
    assert (done.hits, done.misses) == (1, 1)
    assert done.reused == len(body) - 4
    again = run(loaded, later, store, recompute=4)
    assert (again.hits, again.misses) == (2, 0)


def test_short_bodies_are_recomputed_not_stored(loaded):
    plan = build_plan(context=5, prefix=4, passages=[(1, 3), (1, 20)], suffix=3)
    store = PassageKVStore(1 << 24)
    done = run(loaded, plan, store, recompute=4, alone=True)
    assert (done.hits, done.misses) == (0, 1)
    assert len(store) == 2  # the context and the one long passage


def test_a_small_budget_evicts_during_a_prefill_and_the_prompt_still_completes(loaded):
    plan = build_plan(context=4, prefix=2, passages=[(1, 30), (1, 30), (1, 30)], suffix=3)
    one = LAYERS * 2 * 2 * 30 * 16 * 4  # layers x (k, v) x kv heads x tokens x head dim x 4 B
    store = PassageKVStore(max_bytes=2 * one)
    done = run(loaded, plan, store, recompute=2)
    assert done.misses == 3 and done.evictions >= 1
    assert store.total_bytes <= store.max_bytes
    recomputed = run(loaded, plan, PassageKVStore(1 << 24), recompute=2)
    assert torch.equal(done.logits, recomputed.logits)


def test_prefix_before_the_passages_goes_through_the_prefix_cache(loaded):
    from ragkit.generation.kv_cache import PrefixKVCache

    plan = build_plan(context=4, prefix=18, passages=[(1, 12)], suffix=3)
    prefix_cache = PrefixKVCache(1 << 24, block_size=8)
    store = PassageKVStore(1 << 24)
    first = run(loaded, plan, store, recompute=2, prefix_cache=prefix_cache)
    assert prefix_cache.prefixes() == [plan.ids[:16]]  # whole blocks of the 22-token prefix
    again = run(loaded, plan, store, recompute=2, prefix_cache=prefix_cache)
    assert again.reused == 16 + 10
    torch.testing.assert_close(first.logits, again.logits, atol=1e-4, rtol=1e-4)


def test_cancellation_stops_between_steps_and_stores_only_whole_passages(loaded):
    plan = build_plan(context=4, prefix=2, passages=[(1, 30), (1, 30), (1, 30)], suffix=3)
    store = PassageKVStore(1 << 24)
    calls = {"n": 0}

    def after_five() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    assert run(loaded, plan, store, recompute=2, cancelled=after_five) is None
    assert all(store.get(k, count=False).tokens in (4, 30) for k in store.lru_keys())
    done = run(loaded, plan, store, recompute=2)
    assert done is not None and done.hits + done.misses == 3


def test_encoding_after_a_context_continues_its_positions(loaded):
    context = encode_tokens(loaded, [1, 2, 3, 4, 5], 2, never)
    body = encode_tokens(loaded, [6, 7, 8], 2, never, after=context)
    assert (context.base, context.tokens, body.base, body.tokens) == (0, 5, 5, 3)
    _, cache = full_forward(loaded, [1, 2, 3, 4, 5, 6, 7, 8])
    torch.testing.assert_close(body.keys[0], cache.layers[0].keys[0, :, 5:], atol=1e-5, rtol=1e-4)


def test_a_warmed_folder_serves_passages_missing_from_memory(loaded, tmp_path):
    from ragkit.generation.passage_disk import PassageKVDisk
    from ragkit.generation.passage_encode import precompute

    plan = build_plan(context=4, prefix=3, passages=[(1, 20), (1, 24)], suffix=3)
    disk = PassageKVDisk(tmp_path / "kv")
    warm = PassageReuse(PassageKVStore(1 << 24), "tiny|float32", 2, disk)
    with torch.inference_mode():
        assert precompute(loaded, plan, warm, 8) == (2, 0)
        assert precompute(loaded, plan, warm, 8) == (0, 2)  # resumable: already there
    assert len(disk.files()) == 2  # the passages; the context is cheap and stays in memory

    later = PassageReuse(PassageKVStore(1 << 24), "tiny|float32", 2, disk)
    with torch.inference_mode():
        done = prefill_passages(loaded, plan, later, None, 8, never)
    assert (done.hits, done.misses) == (2, 0)
    assert later.store.stats().hits == 2 and len(later.store) == 2
    cold = run(loaded, plan, PassageKVStore(1 << 24), recompute=2, alone=True)
    assert torch.equal(done.logits, cold.logits)

    disk.files()[0].write_bytes(b"not a tensor file")
    assert sum(disk.get(p.stem) is None for p in disk.files()) == 1


def test_kv_reuse_is_a_local_generator_setting():
    from ragkit.spec import PipelineSpec

    spec = PipelineSpec.model_validate({"generator": {"kind": "local", "kv_reuse": "passages"}})
    assert spec.generator.kv_reuse == "passages"
    with pytest.raises(ValueError, match="settings of the local generator"):
        PipelineSpec.model_validate(
            {"generator": {"kind": "openai", "base_url": "http://x", "kv_reuse": "passages"}}
        )
    with pytest.raises(ValueError, match="kv_reuse"):
        PipelineSpec.model_validate({"generator": {"kv_reuse": "blocks"}})
    with pytest.raises(ValueError, match="passage_misses"):
        PipelineSpec.model_validate({"generator": {"passage_misses": "later"}})


def test_how_misses_are_computed_reaches_the_generator_from_yaml():
    from ragkit import build
    from ragkit.spec import PipelineSpec

    for misses in ("in_prompt", "alone"):
        spec = PipelineSpec.model_validate(
            {"generator": {"kind": "local", "kv_reuse": "passages", "passage_misses": misses}}
        )
        generator = build.generator(spec)
        assert generator.passage_misses == misses
        assert generator._reuse().misses_in_prompt is (misses == "in_prompt")


def test_recomputing_the_most_deviating_share_of_tokens(loaded):
    plan = build_plan(context=5, prefix=9, passages=[(2, 20), (3, 15)], suffix=6)
    store = PassageKVStore(1 << 24)
    run(loaded, plan, store, recompute=0)
    everything = run(loaded, plan, store, recompute=0, share=1.0)
    logits, _ = full_forward(loaded, plan.ids)
    torch.testing.assert_close(everything.logits, logits, atol=1e-4, rtol=1e-4)
    assert everything.reused == 0
    half = run(loaded, plan, store, recompute=0, share=0.5)
    assert half.reused == 35 - round(0.5 * 35)


def test_deviation_picks_the_tokens_whose_kv_is_most_off(loaded):
    from ragkit.generation.passage_select import deviation_rows

    plan = build_plan(context=5, prefix=4, passages=[(1, 30)], suffix=3)
    store = PassageKVStore(1 << 24)
    done = run(loaded, plan, store, recompute=0, share=1.0)  # a buffer as a full prefill has it
    keys = torch.stack([layer.keys for layer in done.kv.layers])
    values = torch.stack([layer.values for layer in done.kv.layers])
    span = plan.passages[0]
    candidates = list(range(span.body, span.end))
    keys[1, 0, :, span.body + 7] += 5.0  # two tokens whose stored second-layer KV is off
    values[1, 0, :, span.body + 21] -= 5.0
    with torch.inference_mode():
        chosen = deviation_rows(loaded, plan.ids, keys, values, candidates, 2)
    assert chosen == [span.body + 7, span.body + 21]


def test_stable_order_renders_the_same_passages_the_same_way():
    from ragkit.spec import PipelineSpec

    hits = [chunk(i, f"Passage {i}.") for i in (3, 1, 2)]
    by_rank = PromptAssembler().segments(hits)
    assert [s.chunk_id for s in by_rank] == ["c3", "c1", "c2"]
    stable = PromptAssembler(passage_order="stable")
    one = stable.assemble("First question?", hits, cue="A:")
    other = stable.assemble("First question?", hits[::-1], cue="A:")
    assert [s.chunk_id for s in one.segments] == ["c1", "c2", "c3"]
    assert one.user_text == other.user_text
    spec = PipelineSpec.model_validate(
        {"prompt": {"passage_order": "stable", "passage_template": "<{number}> {text} # # "}}
    )
    from ragkit import build

    assembler = build.prompt_assembler(spec)
    assert assembler.passage_order == "stable"
    assert assembler.segments(hits[:1])[0].text == "<1> Passage 3. # # "
    with pytest.raises(ValueError, match="passage_template may use"):
        PipelineSpec.model_validate({"prompt": {"passage_template": "{title}"}})
