"""The `crud-news` suite: Create items cut from real articles, with the article and its
near-copies left out of the index; Read items from the factoid file; a one-line error
without the data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragkit.cli import app
from ragkit.errors import ConfigError
from ragkit.eval.crud_news import NewsSplit, build_crud_news, split_article
from ragkit.eval.suites import open_suite
from ragkit.types import Document

SENTENCES = [
    f"第{i}句话说的是本地新闻里第{i}件事情的详细经过、参与的人员和单位以及最终的处理结果。"
    for i in range(1, 9)
]
ARTICLE = "".join(SENTENCES)


def _write_data(root: Path) -> None:
    """A tiny CRUD-RAG folder: a factoid item answered by one article, an article to continue,
    a near-copy of that article's second half, and unrelated news."""
    (root / "news").mkdir(parents=True)
    (root / "qa").mkdir()
    other = [
        f"[ 2023-07-0{i} ] ，正文："
        + f"这是另一则新闻，第{i}号报道讲述了完全不同的体育赛事安排和比赛结果。" * 3
        for i in range(1, 4)
    ]
    lines = [
        "[ 2023-07-20 ] ，正文：陕西西安市发放500万元体育类电子消费券，全市173家体育场馆可用。",
        f"[ 2023-07-21 ] ，正文：{ARTICLE}",
        f"[ 2023-07-22 ] ，正文：转载：{''.join(SENTENCES[4:])}",
        *other,
    ]
    (root / "news" / "part_1").write_text("\n".join(lines) + "\n", encoding="utf-8")
    factoids = {
        "f1": {
            "key_info": ["陕西西安市", "500万元体育类电子消费券", "全市173家体育场馆"],
            "question": ["哪个城市发放了体育类电子消费券？"],
            "answers": ["陕西西安市"],
        }
    }
    (root / "qa" / "questanswer_1doc_factoids.json").write_text(
        json.dumps(factoids, ensure_ascii=False), encoding="utf-8"
    )


def test_split_article_cuts_between_sentences_near_the_middle():
    split = split_article(Document(id="a#1", text=ARTICLE))
    assert split is not None
    assert split.beginning + split.continuing == ARTICLE
    assert split.beginning == "".join(SENTENCES[:4])
    assert split_article(Document(id="a#2", text="太短了。")) is None


def test_create_items_leave_their_article_and_its_copies_out_of_the_index(tmp_path):
    _write_data(tmp_path)
    suite, documents = build_crud_news(tmp_path, articles=None)
    creates = [i for i in suite.items if i.task == "create"]
    reads = [i for i in suite.items if i.task == "read"]
    indexed = {d.id for d in documents()}
    assert [i.metadata["source"] for i in creates] == ["part_1#2"]
    item = creates[0]
    assert item.query == "".join(SENTENCES[:4]) and item.reference == "".join(SENTENCES[4:])
    assert item.metadata["left_out_of_index"] == ["part_1#2", "part_1#3"]
    assert not indexed & {"part_1#2", "part_1#3"}
    # the Read item's gold article stays in the index and is never cut into a Create item
    assert [(r.query, r.reference, r.gold_sources) for r in reads] == [
        ("哪个城市发放了体育类电子消费券？", "陕西西安市", ("part_1#1",))
    ]
    assert "part_1#1" in indexed
    assert suite.name == "crud-news-all"


def test_open_suite_without_the_data_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAGKIT_CRUD_DIR", raising=False)
    with pytest.raises(ConfigError, match=r"put it in \.\./shared/data/crud-rag or pass --data"):
        open_suite("crud-news", data=tmp_path / "missing")
    result = CliRunner().invoke(
        app, ["eval", "--suite", "crud-news", "--data", str(tmp_path / "missing")]
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "crud-news" in lines[0] and "--data" in lines[0]


def test_real_crud_news_suite(crud_rag_dir):
    suite, documents = open_suite("crud-news", data=crud_rag_dir, articles=3000)
    creates = [i for i in suite.items if i.task == "create"]
    reads = [i for i in suite.items if i.task == "read"]
    assert len(creates) >= 100 and len(reads) >= 100
    indexed = {d.id: d.text for d in documents()}
    left_out = {s for i in creates for s in i.metadata["left_out_of_index"]}
    assert not left_out & set(indexed)
    assert all(any(g in indexed for g in r.gold_sources) for r in reads)
    for item in creates:
        assert item.reference and item.query and item.reference not in item.query
        # no indexed article holds any of the continuation's sample passages verbatim
        doc = Document(id=item.metadata["source"], text=item.query + item.reference)
        windows = NewsSplit(doc, item.query, item.reference).windows()
        assert len(windows) == 3
        assert not any(w in text for w in windows for text in indexed.values())


@pytest.mark.slow
def test_eval_runs_the_crud_news_suite_with_the_packaged_judge(crud_rag_dir, tmp_path):
    args = [
        "eval", "--suite", "crud-news", "--data", str(crud_rag_dir), "--articles", "40",
        "--limit", "1", "-p", "best", "--no-ragas", "--store", str(tmp_path / "idx"),
        "--run-dir", str(tmp_path / "run"), "--judge-cache", str(tmp_path / "judge.sqlite"),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "## create" in result.output and "## read" in result.output
    assert "RAGQuestEval judge: packaged qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" in result.output
    assert "| BLEU | ROUGE-L | emb. sim. | QuestEval F1 | QuestEval recall |" in result.output
    records = [json.loads(x) for x in (tmp_path / "run" / "items.jsonl").read_text().splitlines()]
    assert {r["task"] for r in records} == {"create", "read"}
    quest = (tmp_path / "run" / "questeval.jsonl").read_text().splitlines()
    assert len(quest) == 2
    again = CliRunner().invoke(app, args, catch_exceptions=False)
    assert "0 items computed, 2 from cache" in again.output
    assert "0 new calls" in again.output
