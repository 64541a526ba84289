"""Generation backends: Prompt → Answer on the local CPU, via vLLM, via an OpenAI-style server, or
by fixed rules (`ScriptedGenerator`, for tests).

Names resolve on first access, so importing this package loads no backend.
"""

from __future__ import annotations

from ragkit.lazy import lazy_exports

_EXPORTS = {
    "Generator": "ragkit.generation.base",
    "GenerationParams": "ragkit.generation.base",
    "LocalGenerator": "ragkit.generation.local",
    "OpenAICompatibleGenerator": "ragkit.generation.openai_compat",
    "PrefixKVCache": "ragkit.generation.kv_cache",
    "ScriptedGenerator": "ragkit.generation.scripted",
    "VLLMGenerator": "ragkit.generation.vllm",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
