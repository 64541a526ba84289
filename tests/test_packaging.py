"""The wheel carries what the library reads at run time: named pipelines, the bundled suite and
the chat page. (`.ci/wheel-smoke.sh` then runs the installed wheel outside the checkout.)"""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory, repo_root) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(repo_root)],
        check=True, cwd=build, capture_output=True,
    )  # fmt: skip
    (wheel,) = out.glob("ragkit-*.whl")
    return set(zipfile.ZipFile(wheel).namelist())


def test_every_named_pipeline_and_the_chat_page_are_in_the_wheel(wheel_names, repo_root):
    for folder in ("ragkit/pipelines", "ragkit/serve/static"):
        shipped = {p.relative_to(repo_root).as_posix() for p in (repo_root / folder).iterdir()}
        assert shipped and shipped <= wheel_names, sorted(shipped - wheel_names)


def test_the_bundled_suite_is_in_the_wheel(wheel_names, repo_root):
    bundled = repo_root / "ragkit" / "eval" / "bundled"
    data = {
        p.relative_to(repo_root).as_posix()
        for p in bundled.rglob("*")
        if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts
    }
    assert "ragkit/eval/bundled/suite.yaml" in data and len(data) > 15
    assert data <= wheel_names, sorted(data - wheel_names)
