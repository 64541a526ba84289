"""The chat server: an OpenAI-compatible endpoint and web page over ragkit pipelines.

Importing this package is cheap; FastAPI loads with `ragkit.serve.app`.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "create_app": "ragkit.serve.app",
    "ServeSettings": "ragkit.serve.app",
    "serve": "ragkit.serve.command",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ragkit.serve' has no attribute {name!r}")
