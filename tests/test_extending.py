"""Extending ragkit from outside the package: a user's reranker named by import path in a
pipeline YAML, its typed options checked like every other key, and one-call overrides."""

from __future__ import annotations

import textwrap

import pytest

from ragkit import build, load_pipeline
from ragkit.errors import ConfigError
from ragkit.registry import RERANKERS
from ragkit.spec import load_spec

QUESTION = "Who has been the harbour master of Varrow Point since 2017?"

USER_MODULE = '''
from ragkit.runnable import BatchedRunnable


class KeepSources(BatchedRunnable[dict, list]):
    """Keeps passages from sources containing `contains`, best first, at most `keep`."""

    contains: str
    keep: int = 3

    def _run_batch(self, inputs, config=None):
        return [
            [h for h in x["retrieved"] if self.contains in h.chunk.source][: self.keep]
            for x in inputs
        ]
'''


@pytest.fixture()
def user_package(tmp_path, monkeypatch):
    """`userpkg.stages` on sys.path, written outside the ragkit source tree."""
    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "stages.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def spec_file(folder, store, rerank: str) -> str:
    path = folder / "mine.yaml"
    head = f"name: mine\nstore: {{location: {store}}}\ngenerator: {{kind: scripted}}\n"
    head += "retriever: {kind: dense, top_k: 2}\nrerank:\n"
    path.write_text(head + textwrap.indent(rerank, "  ") + "\n", encoding="utf-8")
    return str(path)


def test_a_users_reranker_runs_from_yaml(user_package, scripted_spec):
    path = spec_file(
        user_package,
        scripted_spec.store.location,
        "kind: userpkg.stages:KeepSources\ncandidates: 20\noptions: {contains: ferry, keep: 2}",
    )
    rag = load_pipeline(path)
    assert type(rag.reranker).__name__ == "KeepSources" and rag.reranker.keep == 2
    answer = rag.invoke(QUESTION)
    # The harbour report ranks first without the reranker; the user's class keeps only ferry.
    assert answer.retrieved and all("ferry" in h.chunk.source for h in answer.retrieved)
    assert "ferry" in rag.generator.prompts[-1].segments[0].source


@pytest.mark.parametrize(
    ("rerank", "message"),
    [
        (
            "kind: userpkg.stages:KeepSources\noptions: {contains: ferry, keep: many}",
            r"mine\.yaml: rerank\.options\.keep: Input should be a valid integer.*'many'",
        ),
        (
            "kind: userpkg.stages:KeepSources\noptions: {contains: x, colour: red}",
            r"mine\.yaml: rerank\.options\.colour: unknown key",
        ),
        (
            "kind: userpkg.stages:KeepSources",
            r"mine\.yaml: rerank\.options\.contains: Field required",
        ),
        ("kind: userpkg.nowhere:X", r"mine\.yaml: rerank\.kind: cannot import 'userpkg\.nowhere'"),
        ("kind: userpkg.stages:Missing", r"rerank\.kind: 'userpkg\.stages' has no class 'Missing'"),
        ("kind: best", r"mine\.yaml: rerank\.kind: unknown reranker 'best'; known: cross-enc"),
        ("kind: rrf\noptions: {k: 1}", r"rerank: options are for a class named by import path"),
    ],
)
def test_bad_plugin_settings_name_file_key_and_reason(user_package, tmp_path, rerank, message):
    with pytest.raises(ConfigError, match=message):
        load_spec(spec_file(user_package, tmp_path / "idx", rerank))


def test_a_registered_kind_is_usable_by_name(scripted_spec):
    from ragkit.stages.rerank import RRFReranker

    RERANKERS.register("rrf-again", lambda section, parts: RRFReranker(embedder=parts.embedder))
    spec = scripted_spec.override(rerank={"kind": "rrf-again"})
    assert isinstance(build.pipeline(spec).reranker, RRFReranker)


def test_one_call_overrides_are_validated_like_yaml(scripted_spec):
    rag = load_pipeline(
        "naive",
        store_location=scripted_spec.store.location,
        generator={"kind": "scripted", "max_new_tokens": 3},
    )
    assert len(rag.invoke(QUESTION).text.split()) == 3
    with pytest.raises(ConfigError, match=r"generator\.max_new_tokens: .*greater than 0 \(got 0\)"):
        load_pipeline("naive", generator={"max_new_tokens": 0})
    with pytest.raises(ConfigError, match=r"generator\.colour: unknown key"):
        load_pipeline("naive", generator={"colour": "red"})
