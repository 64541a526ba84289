"""Generation backends: Prompt → Answer on the local CPU, via vLLM, or via an OpenAI-style server.

Names resolve on first access, so importing this package loads no backend.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Generator": "ragkit.generation.base",
    "GenerationParams": "ragkit.generation.base",
    "LocalGenerator": "ragkit.generation.local",
    "OpenAICompatibleGenerator": "ragkit.generation.openai_compat",
    "PrefixKVCache": "ragkit.generation.kv_cache",
    "VLLMGenerator": "ragkit.generation.vllm",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ragkit.generation' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
