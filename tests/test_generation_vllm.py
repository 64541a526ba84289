"""vLLM in-process: runs only where vllm imports and a CUDA GPU is present."""

from __future__ import annotations

import importlib.util

import pytest

from ragkit.errors import ConfigError
from ragkit.generation.vllm import VLLMGenerator
from ragkit.types import Prompt

MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


needs_vllm = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None or not has_cuda(),
    reason="needs `pip install vllm` and a CUDA GPU",
)


def test_settings_are_validated_without_vllm():
    with pytest.raises(ValueError, match="1.5"):
        VLLMGenerator(MODEL, gpu_memory_utilization=1.5)
    with pytest.raises(ValueError, match="max_model_len"):
        VLLMGenerator(MODEL, max_model_len=0)
    assert VLLMGenerator(MODEL).model == MODEL  # constructing does not start an engine


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_missing_vllm_is_a_config_error():
    with pytest.raises(ConfigError, match="pip install vllm"):
        VLLMGenerator(MODEL).invoke("hi")


@pytest.fixture(scope="module")
def vllm_generator() -> VLLMGenerator:
    return VLLMGenerator(MODEL, max_new_tokens=16, gpu_memory_utilization=0.5, max_model_len=2048)


@pytest.mark.gpu
@needs_vllm
def test_batch_is_one_call_and_reports_cached_tokens(vllm_generator):
    notes = "".join(f"Note {i}: site {i} stores {i * 7} crates.\n" for i in range(60))
    prompts = [Prompt.plain(notes + f"How many crates at site {i}?") for i in (3, 5)]
    first = vllm_generator.invoke(prompts[0])
    assert "21" in first.text
    second = vllm_generator.batch(prompts)
    assert all(a.usage.prompt_tokens > 300 for a in second)
    assert all(a.usage.cached_prompt_tokens > 0 for a in second)
    assert second[0].text == first.text


@pytest.mark.gpu
@needs_vllm
def test_stream_and_stop(vllm_generator):
    chunks = list(vllm_generator.stream("Count from 1 to 9 separated by spaces.", stop=["5"]))
    final = chunks[-1].answer
    assert final is not None and final.text and "5" not in final.text
