"""The package's layout: every module imports on its own, and the moved modules' old import paths
still give the same objects."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ragkit

PACKAGE = Path(ragkit.__file__).parent

# Old public path -> (new module, names that must be the very same objects there).
MOVED = {
    "ragkit.store": ("ragkit.index.store", ("ChromaStore", "CollectionInfo", "MODEL_KEY")),
    "ragkit.ingest": ("ragkit.index.ingest", ("Ingestor", "IngestProgress", "IngestReport")),
    "ragkit.chunking": ("ragkit.index.chunking", ("TokenChunker", "plain_tokenizer")),
    "ragkit.loaders": ("ragkit.index.loaders", ("LoadIssue", "load_documents", "FORMATS")),
    "ragkit.sources": ("ragkit.index.sources", ("real_source", "stored_source")),
    "ragkit.embedding": ("ragkit.embedding.embedder", ("Embedder", "BACKEND_ENV")),
}


def _module_names() -> list[str]:
    """Every module of the package, found on disk (importing nothing to find them)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_import_paths_give_the_moved_objects(old):
    new, names = MOVED[old]
    before, after = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(before, name) is getattr(after, name), f"{old}.{name}"


def test_the_store_shim_keeps_the_manifest_record():
    from ragkit.index.manifest import DocumentRecord
    from ragkit.store import DocumentRecord as old

    assert old is DocumentRecord


def test_the_e5_embedder_is_one_class():
    from ragkit.embedding import E5Embedder
    from ragkit.stages import E5Embedder as from_stages

    assert from_stages is E5Embedder


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork for fresh module state")
def test_every_module_imports_first_in_a_fresh_interpreter():
    """Each module is imported first in a process that holds no ragkit module, so an import
    cycle (which only shows for some import orders) fails here as an ImportError. Third-party
    libraries are loaded once before the forks, which keeps the check quick."""
    names = _module_names()
    assert "ragkit.index.store" in names and "ragkit.cli" in names
    script = (
        "import os, sys, traceback\n"
        "for name in sys.argv[1:]:\n"  # load the third-party libraries once, up front
        "    try:\n"
        "        __import__(name)\n"
        "    except Exception:\n"
        "        pass\n"
        "for name in [n for n in sys.modules if n == 'ragkit' or n.startswith('ragkit.')]:\n"
        "    del sys.modules[name]\n"
        "bad = []\n"
        "for name in sys.argv[1:]:\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        try:\n"
        "            __import__(name)\n"
        "        except BaseException:\n"
        "            traceback.print_exc()\n"
        "            os._exit(1)\n"
        "        os._exit(0)\n"
        "    if os.waitpid(pid, 0)[1]:\n"
        "        bad.append(name)\n"
        "print(' '.join(bad))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    out = subprocess.run(
        [sys.executable, "-c", script, *names],
        capture_output=True,
        text=True,
        env=env,
        cwd=PACKAGE.parent,
        check=True,
    )
    assert out.stdout.split() == [], out.stderr[-4000:]


def test_the_design_notes_name_every_module():
    design = (PACKAGE.parent / "docs" / "design.md").read_text(encoding="utf-8")
    missing = [
        str(path.relative_to(PACKAGE.parent))
        for path in sorted(PACKAGE.rglob("*.py"))
        if f"`{path.relative_to(PACKAGE.parent)}`" not in design
    ]
    assert missing == [], f"docs/design.md has no row for {missing}"


def test_every_ragkit_environment_variable_is_documented():
    import re

    root = PACKAGE.parent
    read = set()
    for folder in ("ragkit", "tests", "benchmarks", "scripts"):
        for path in (root / folder).rglob("*"):
            if path.suffix in (".py", ".sh") and path.is_file():
                read |= set(re.findall(r"RAGKIT_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
    assert "RAGKIT_EMBEDDING_BACKEND" in read
    design = (root / "docs" / "design.md").read_text(encoding="utf-8")
    assert sorted(v for v in read if f"| `{v}` |" not in design) == []
