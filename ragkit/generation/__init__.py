"""Generation backends: Prompt → Answer on the local CPU, via vLLM, via an OpenAI-style server, or
by fixed rules (`ScriptedGenerator`, for tests).

Names resolve on first access, so importing this package loads no backend.
"""

from __future__ import annotations

from ragkit.lazy import lazy_exports

_EXPORTS = {
    "ragkit.generation.base": ("Generator", "GenerationParams"),
    "ragkit.generation.local": ("LocalGenerator",),
    "ragkit.generation.openai_compat": ("OpenAICompatibleGenerator",),
    "ragkit.generation.kv_cache": ("PrefixKVCache",),
    "ragkit.generation.scripted": ("ScriptedGenerator",),
    "ragkit.generation.vllm": ("VLLMGenerator",),
}


__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
