"""Named pipelines and bundled suites resolve the same way from a checkout and from a wheel."""

from __future__ import annotations

import pytest

import ragkit
from ragkit import resources
from ragkit.eval.datasets import load_suite
from ragkit.spec import load_spec, pipeline_names

STAGE_PIPELINES = [
    "naive",
    "hybrid",
    "rerank",
    "rewrite-retrieve-read",
    "multi-query",
    "hyde",
    "iter-retgen",
]


def test_a_checkout_reads_the_top_level_folders(repo_root):
    assert resources.pipelines_dir() == repo_root / "pipelines"
    assert resources.evals_dir() == repo_root / "evals"
    assert load_suite("bundled").path.is_relative_to(repo_root / "evals" / "bundled")
    assert load_spec("naive").name == "naive"


def test_the_seven_stage_pipelines_build_by_name(tmp_path):
    assert set(STAGE_PIPELINES) <= set(pipeline_names())
    for name in STAGE_PIPELINES:
        rag = ragkit.load_pipeline(name, store_location=str(tmp_path / "index"))
        assert rag.pipeline_name == name


def test_an_installed_package_reads_its_own_copy(tmp_path, monkeypatch):
    package = tmp_path / "site-packages" / "ragkit"
    (package / "pipelines").mkdir(parents=True)
    (tmp_path / "site-packages" / "pipelines").mkdir()  # another distribution's folder
    monkeypatch.setattr(resources, "_PACKAGE", package)
    assert resources.shipped_dir("pipelines") == package / "pipelines"


def test_a_folder_beside_an_installed_package_is_never_taken_for_ours(tmp_path, monkeypatch):
    package = tmp_path / "site-packages" / "ragkit"
    package.mkdir(parents=True)
    (tmp_path / "site-packages" / "evals").mkdir()  # e.g. another distribution named evals
    monkeypatch.setattr(resources, "_PACKAGE", package)
    assert resources.shipped_dir("evals") == package / "evals"
    assert not resources.shipped_dir("evals").exists()


def test_ragkit_pipelines_points_elsewhere(tmp_path, monkeypatch):
    (tmp_path / "mine.yaml").write_text("name: mine\n", encoding="utf-8")
    monkeypatch.setenv("RAGKIT_PIPELINES", str(tmp_path))
    assert pipeline_names() == ["mine"]
    with pytest.raises(Exception, match="unknown pipeline 'naive'"):
        load_spec("naive")
