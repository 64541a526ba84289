"""The heap settings that keep a long ingest's memory flat (ragkit.heap)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="the settings are glibc's; elsewhere they are not applied")
def test_settings_apply_once_per_process_on_glibc():
    code = (
        "from ragkit.heap import limit_heap_growth as f\n"
        "import ragkit.heap as h\n"
        "assert not h._applied\n"
        "print(f(), f(), h._applied)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True"]


def test_loading_an_embedder_applies_them(embedder):
    import ragkit.heap as heap

    embedder.warm_up()
    assert heap._applied is GLIBC
