"""Process-wide settings: the heap limits that keep a long ingest's memory flat (ragkit.heap) and
the environment defaults, applied by `ragkit.process.configure_process` from entry points only."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from ragkit.process import PROCESS_ENV

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _fresh(code: str, tmp_path=None) -> dict:
    """Run `code` in a fresh interpreter without the process settings in its environment; it
    prints one JSON object."""
    env = {k: v for k, v in os.environ.items() if k not in PROCESS_ENV}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


REPORT = (
    "import json, os\n"
    "import ragkit.heap as h\n"
    f"names = {sorted(PROCESS_ENV)!r}\n"
    "print(json.dumps({'heap': h._applied, 'env': {n: os.environ.get(n) for n in names}}))\n"
)


@pytest.mark.skipif(not GLIBC, reason="the settings are glibc's; elsewhere they are not applied")
def test_settings_apply_once_per_process_on_glibc():
    code = (
        "import json\n"
        "from ragkit.heap import limit_heap_growth as f\n"
        "import ragkit.heap as h\n"
        "assert not h._applied\n"
        "print(json.dumps([f(), f(), h._applied]))\n"
    )
    assert _fresh(code) == [True, True, True]


def test_configure_process_sets_the_environment_and_the_heap():
    got = _fresh("from ragkit.process import configure_process\nconfigure_process()\n" + REPORT)
    assert got == {"heap": GLIBC, "env": PROCESS_ENV}


def test_configure_process_keeps_what_the_user_set():
    code = (
        "import os\nos.environ['TRANSFORMERS_VERBOSITY'] = 'info'\n"
        "from ragkit.process import configure_process\nconfigure_process()\n"
    )
    assert _fresh(code + REPORT)["env"]["TRANSFORMERS_VERBOSITY"] == "info"


def test_library_imports_change_nothing_process_wide():
    code = "import ragkit.cli, ragkit.index.ingest, ragkit.serve.command, ragkit.embedding\n"
    assert _fresh(code + REPORT) == {"heap": False, "env": dict.fromkeys(PROCESS_ENV)}


@pytest.mark.slow
def test_loading_an_embedder_changes_nothing_process_wide():
    code = "from ragkit.embedding import Embedder\nEmbedder().embed_documents(['a passage'])\n"
    assert _fresh(code + REPORT) == {"heap": False, "env": dict.fromkeys(PROCESS_ENV)}


def test_every_command_applies_them(tmp_path):
    """The command line's callback runs before any command (here `ragkit info`)."""
    code = (
        "from typer.testing import CliRunner\n"
        "from ragkit.cli import app\n"
        "result = CliRunner().invoke(app, ['info', '--store', 'missing-store'])\n"
        "assert result.exit_code == 0, result.output\n"
    )
    assert _fresh(code + REPORT, tmp_path) == {"heap": GLIBC, "env": PROCESS_ENV}
