"""The local CPU generator with the real packaged model: decoding, streaming, exact KV reuse."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from ragkit.generation.local import LocalGenerator, converted_folder, resolve_dtype
from ragkit.generation.scheduler import GenerationCancelled
from ragkit.testing import GeneratorContract
from ragkit.types import Answer, Prompt, Segment

pytestmark = pytest.mark.slow

SYSTEM = "Answer from the numbered passages only and cite them like [1]."
PASSAGES = [
    "The Kestrel Bridge in Harwick opened in 1931 and spans the river Lune with three steel "
    "arches. It was designed by the engineer Margaret Ellory, who also built the town's "
    "railway station. The bridge carried trams until 1958 and was restored in 2004.",
    "Harwick's town council meets every second Tuesday in the old corn exchange. The council "
    "has eleven members and its current leader is Tomas Reyes, elected in 2021. It manages "
    "the parks, the market and the two public libraries.",
    "The river Lune floods most winters near Harwick; in 2015 the water rose 4.2 metres above "
    "its usual level and closed the Kestrel Bridge for nine days. A flood wall finished in "
    "2019 now protects the market square.",
    "哈威克镇的图书馆建于1902年，藏书约八万册。图书馆每周开放六天，周一闭馆。",
]


def rag_prompt(n_passages: int, question: str) -> Prompt:
    """The append layout: a stable prefix, then passages, then a short cue."""
    segments = tuple(
        Segment(i + 1, f"c{i}", f"d{i}", f"doc{i}.txt", f"[{i + 1}] {PASSAGES[i]}\n")
        for i in range(n_passages)
    )
    prefix = f"Question: {question}\n\nPassages:\n"
    return Prompt(SYSTEM, prefix, segments, "\nAnswer:", question)


@pytest.fixture(scope="module")
def uncached(local_generator) -> LocalGenerator:
    """Same weights (shared in-process), no prefix cache."""
    return LocalGenerator(max_new_tokens=8, prefix_cache_bytes=0)


def test_invoke_str_reports_usage(local_generator):
    answer = local_generator.invoke("What is 2 + 3? Reply with just the number.")
    assert isinstance(answer, Answer)
    assert "5" in answer.text
    assert answer.citations == ()
    usage = answer.usage
    assert usage.prompt_tokens > 10
    assert 0 < usage.completion_tokens <= 48
    assert 0 < usage.time_to_first_token_s <= usage.total_time_s


def test_converted_folder_is_a_plain_checkpoint():
    folder = converted_folder("bfloat16")
    config = (folder / "config.json").read_text()
    assert "quantization_config" not in config
    assert any(folder.glob("*.safetensors"))


def test_auto_dtype_follows_the_cpu(local_generator):
    flags = Path("/proc/cpuinfo").read_text()
    native_bf16 = "amx_bf16" in flags or "avx512_bf16" in flags
    int8 = bool({"x86", "fbgemm"} & set(torch.backends.quantized.supported_engines))
    expected = "bfloat16" if native_bf16 else ("int8" if int8 else "float32")
    assert resolve_dtype("auto") == expected
    assert resolve_dtype("float32") == "float32"
    model = local_generator.loaded().model
    float_linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
    int8_linears = [m for m in model.modules() if type(m) is torch.ao.nn.quantized.dynamic.Linear]
    if expected == "int8":
        assert float_linears and all(m in down_projections(model) for m in float_linears)
        assert len(int8_linears) > 100
    else:
        assert float_linears and not int8_linears
        assert str(model.lm_head.weight.dtype) == f"torch.{expected}"


def down_projections(model) -> list:
    return [m for name, m in model.named_modules() if name.endswith("mlp.down_proj")]


def test_int8_answers_like_float32():
    """Quantizing must not change what the model says about a passage it was given."""
    prompt = Prompt.plain(
        "The Larkspur ferry leaves Harbour Quay at 7:40 every weekday and takes 25 minutes to "
        "reach Ostrey Island. On weekends it runs hourly from 9:00.\n\n"
        "How long does the ferry take to reach Ostrey Island?",
        system="Answer from the passage in a few words.",
    )
    answers = {
        dtype: LocalGenerator(dtype=dtype, max_new_tokens=16, prefix_cache_bytes=0).invoke(prompt)
        for dtype in ("float32", "int8")
    }
    assert "25" in answers["float32"].text
    assert "25" in answers["int8"].text


def test_second_instance_shares_the_loaded_model(local_generator, uncached):
    assert uncached.loaded() is local_generator.loaded()
    assert uncached.prefix_cache is None


def test_prefix_cache_is_exact_and_reuses_tokens(local_generator, uncached):
    cached = LocalGenerator(max_new_tokens=8)
    question = "When did the Kestrel Bridge open and who designed it?"
    prompts = [rag_prompt(n, question) for n in (1, 2, 3)]
    prompts.append(rag_prompt(2, "How high did the river rise in 2015?"))
    for i, prompt in enumerate(prompts):
        on, off = cached.invoke(prompt), uncached.invoke(prompt)
        ids_on = cached.loaded().tokenizer(on.text).input_ids
        ids_off = uncached.loaded().tokenizer(off.text).input_ids
        assert ids_on == ids_off, f"prompt {i}: {on.text!r} != {off.text!r}"
        assert off.usage.cached_prompt_tokens == 0
        assert on.usage.prompt_tokens == off.usage.prompt_tokens
        if i in (1, 2):  # extends the previous prompt with an appended passage
            assert on.usage.cached_prompt_tokens > 0
            assert on.usage.cached_prompt_tokens % cached.prefill_block_tokens == 0
            assert on.usage.cached_prompt_tokens < on.usage.prompt_tokens


class TestLocalGeneratorContract(GeneratorContract):
    """Stream joins to invoke, stop strings, usage, batch as invoke, async, cancellation; in
    float32, where a batch decodes exactly as each prompt alone."""

    cancellation = "raises"
    cancelled_error = GenerationCancelled

    @pytest.fixture
    def generator(self, float32_generator):
        return float32_generator


def test_a_rag_prompt_streams_to_the_invoked_answer(local_generator):
    prompt = rag_prompt(1, "Who designed the Kestrel Bridge?")
    chunks = list(local_generator.stream(prompt, max_new_tokens=8))
    assert len(chunks) > 2
    assert chunks[-1].answer is not None
    assert chunks[-1].answer.text == local_generator.invoke(prompt, max_new_tokens=8).text


def test_call_time_overrides_win(local_generator):
    answer = local_generator.invoke("Count from 1 to 20.", max_new_tokens=3)
    assert answer.usage.completion_tokens == 3
    with pytest.raises(ValueError, match="max_new_tokens must be > 0, got 0"):
        local_generator.invoke("hi", max_new_tokens=0)


def test_sampling_is_seeded(local_generator):
    prompt = "Write a short sentence about rivers."
    a, b, c = (
        local_generator.invoke(prompt, temperature=1.5, seed=seed, max_new_tokens=6).text
        for seed in (7, 7, 8)
    )
    assert a == b
    assert a != c


def test_batch_matches_invoke_and_reuses_the_shared_prefix():
    """float32, where decoding together is exactly decoding alone (int8 shares one activation
    scale across the batch)."""
    gen = LocalGenerator(max_new_tokens=6, dtype="float32")
    uncached = LocalGenerator(max_new_tokens=6, dtype="float32", prefix_cache_bytes=0)
    prompts = [
        rag_prompt(3, q) for q in ("Who leads the council?", "When was the flood wall built?")
    ]
    prompts = [
        Prompt(p.system, "Passages:\n", p.segments, p.prefix + "Answer:", p.question)
        for p in prompts
    ]  # question last: the passages are the shared prefix
    answers = gen.batch(prompts)
    assert [a.text for a in answers] == [uncached.invoke(p, max_new_tokens=6).text for p in prompts]
    assert answers[0].usage.cached_prompt_tokens == 0
    assert answers[1].usage.cached_prompt_tokens >= 128


def test_concurrent_callers_decode_together(float32_generator):
    """Identical prompts give identical rows; in float32 a batch decodes as each prompt alone."""
    prompt = "Name a colour of the sky."
    expected = float32_generator.invoke(prompt, max_new_tokens=4).text
    results: list[str] = []

    def call() -> None:
        results.append(float32_generator.invoke(prompt, max_new_tokens=4).text)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 2


def test_cache_byte_bound_with_real_kv(local_generator):
    element = next(local_generator.loaded().model.parameters()).element_size()
    per_token = 24 * 2 * 2 * 64 * element  # layers x (k, v) x kv heads x head dim x bytes
    bound = per_token * 64 * 7
    gen = LocalGenerator(max_new_tokens=1, prefix_cache_bytes=bound)
    cache = gen.prefix_cache
    seen = []
    for i in range(8):
        prompt = Prompt.plain(f"Item {i}: " + " ".join(f"w{i}x{j}" for j in range(25)))
        gen.invoke(prompt)
        ids = gen.token_ids(prompt)
        seen.append(tuple(ids[: len(ids) // 64 * 64]))
        assert cache.total_bytes <= bound
        assert cache.total_bytes == per_token * sum(len(k) for k in cache.prefixes())
    assert len(cache) >= 2
    assert cache.prefixes() == seen[-len(cache) :]  # least recently used were evicted


def test_invalid_settings_name_the_value():
    with pytest.raises(ValueError, match="float16"):
        LocalGenerator(dtype="float16")
    with pytest.raises(ValueError, match="-1"):
        LocalGenerator(prefix_cache_bytes=-1)
    with pytest.raises(ValueError, match="temperature"):
        LocalGenerator(temperature=-0.5)
    with pytest.raises(TypeError, match="int"):
        LocalGenerator().invoke(42)  # type: ignore[arg-type]
