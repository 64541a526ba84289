"""Every named pipeline runs end to end on the bundled corpus with the real local model."""

from __future__ import annotations

import json

import pytest

from ragkit import build
from ragkit.errors import ConfigError
from ragkit.spec import load_spec, pipeline_names
from ragkit.types import Query

NAMED = [
    "hybrid",
    "rerank",
    "rewrite-retrieve-read",
    "multi-query",
    "hyde",
    "iter-retgen",
    "best",
    "best-extract",
    "bm25-zh",
    "chat",
]
QUESTION = "Who is the mayor of Varrow Point?"
COLLECTION = "named-pipelines"


@pytest.fixture(scope="module")
def index(tmp_path_factory, bundled_corpus):
    """One index of the bundled corpus shared by every pipeline (same embedder and chunker)."""
    location = str(tmp_path_factory.mktemp("named-index"))
    spec = load_spec("best").with_store(location, COLLECTION)
    build.ingestor(spec).ingest([bundled_corpus], progress=False)
    assert build.store(spec).count() > 0
    return location


def short(name: str, location: str):
    spec = load_spec(name).with_store(location, COLLECTION)
    generator = spec.generator.model_copy(update={"max_new_tokens": 24})
    return spec.model_copy(update={"generator": generator})


def test_every_named_pipeline_is_listed_and_valid():
    assert set(NAMED) <= set(pipeline_names())
    for name in NAMED:
        spec = load_spec(name)
        assert spec.name == name and spec.description


def test_bad_stage_values_name_file_key_and_reason(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rewrite:\n  mode: telepathy\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml: rewrite\.mode: .*telepathy"):
        load_spec(bad)
    bad.write_text("rerank:\n  kind: cross-encoder\n  candidate: 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"rerank\.candidate: unknown key"):
        load_spec(bad)
    bad.write_text("iterate:\n  rounds: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"iterate\.rounds"):
        load_spec(bad)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMED)
def test_named_pipeline_answers_from_the_right_file(name, index):
    rag = build.pipeline(short(name, index))
    answer = rag.invoke(QUESTION)
    assert answer.text.strip()
    assert answer.question == QUESTION
    sources = [h.chunk.source for h in answer.retrieved]
    assert any("town-overview" in s for s in sources), sources
    if name == "iter-retgen":
        assert len(answer.trace) >= 1 and "draft" in answer.trace[0]
    if name == "rerank":
        assert {h.source for h in answer.retrieved} == {"embedder"}


@pytest.mark.slow
def test_load_pipeline_wraps_stages(index):
    import ragkit
    from ragkit.stages.iterate import IterRetGen
    from ragkit.stages.rewrite import QueryRewriter

    loop = ragkit.load_pipeline("iter-retgen", store_location=index, collection=COLLECTION)
    assert isinstance(loop, IterRetGen) and loop.rounds == 2
    hyde = ragkit.load_pipeline("hyde", store_location=index, collection=COLLECTION)
    assert isinstance(hyde.rewriter, QueryRewriter) and hyde.rewriter.mode == "hyde"


@pytest.mark.slow
def test_chat_pipeline_searches_a_follow_up_with_the_earlier_questions(index):
    from ragkit.stages.history import HistorySearch

    rag = build.pipeline(short("chat", index))
    assert isinstance(rag.retriever, HistorySearch) and rag.rewriter is None
    history = [
        ("user", "Tell me about the desalination plant."),
        ("assistant", "The Brinewell plant supplies the town's drinking water."),
        ("user", "Who is the mayor of Varrow Point?"),
        ("assistant", "Odile Fenwick."),
    ]
    follow_up = Query("When was she elected?", tuple(history))
    assert rag.retriever.search_texts(follow_up) == [
        ("When was she elected?", 1.0),
        ("Who is the mayor of Varrow Point?\nWhen was she elected?", 0.5),
        ("Tell me about the desalination plant.\nWhen was she elected?", 0.25),
    ]
    answer = rag.invoke({"question": follow_up.question, "history": history})
    assert answer.question == "When was she elected?"
    assert any("town-overview" in h.chunk.source for h in answer.retrieved)


def test_follow_up_modes_build_their_rewriters(tmp_path):
    from ragkit.stages.rewrite import StandaloneQuestion

    spec = tmp_path / "standalone.yaml"
    spec.write_text("rewrite:\n  mode: standalone\n  max_new_tokens: 32\n", encoding="utf-8")
    rewriter = build.pipeline(load_spec(spec).with_store(str(tmp_path), "modes")).rewriter
    assert isinstance(rewriter, StandaloneQuestion) and rewriter.max_new_tokens == 32
    spec.write_text("rewrite:\n  mode: history\n  turns: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"rewrite\.turns"):
        load_spec(spec)


@pytest.mark.slow
def test_cli_query_runs_a_named_pipeline(index):
    from typer.testing import CliRunner

    from ragkit.cli import app

    result = CliRunner().invoke(
        app,
        ["query", QUESTION, "--pipeline", "bm25-zh", "--store", index, "--collection", COLLECTION]
        + ["--json", "--top-k", "2"],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.strip().splitlines()[-1])
    assert record["question"] == QUESTION
