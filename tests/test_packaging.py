"""The wheel carries what the library reads at run time: named pipelines, the bundled suite and
the chat page, plus the `py.typed` marker that lets type checkers read ragkit's annotations.
(`.ci/wheel-smoke.sh` then runs the installed wheel outside the checkout.)"""

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
    """Top-level `pipelines/` is mapped into the package; the chat page ships from inside it."""
    for folder, packaged in (("pipelines", "ragkit/pipelines"), ("ragkit/serve/static", None)):
        files = [p for p in (repo_root / folder).iterdir() if p.is_file()]
        shipped = {
            f"{packaged}/{p.name}" if packaged else p.relative_to(repo_root).as_posix()
            for p in files
        }
        assert shipped and shipped <= wheel_names, sorted(shipped - wheel_names)
    assert "ragkit/pipelines/naive.yaml" in wheel_names


def test_the_bundled_suite_is_in_the_wheel(wheel_names, repo_root):
    evals = repo_root / "evals"
    data = {
        "ragkit/evals/" + p.relative_to(evals).as_posix()
        for p in evals.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert "ragkit/evals/bundled/suite.yaml" in data and len(data) > 15
    assert data <= wheel_names, sorted(data - wheel_names)


def test_nothing_from_outside_the_package_leaks_into_the_wheel(wheel_names):
    tops = {name.split("/")[0] for name in wheel_names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"ragkit"}, sorted(tops)


def test_the_wheel_declares_its_annotations_with_py_typed(wheel_names):
    """Without the PEP 561 marker a user's type checker treats an installed ragkit as untyped."""
    assert "ragkit/py.typed" in wheel_names
