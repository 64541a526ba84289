"""Dataset loaders and task prompts, on small files written here and on the real CRUD-RAG data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ragkit.errors import ConfigError, InputError
from ragkit.eval.crud_rag import (
    answerable_factoids,
    articles_containing,
    load_crud_benchmark,
    load_crud_factoids,
    load_crud_news,
)
from ragkit.eval.datasets import load_qa_jsonl, load_suite, load_task_jsonl
from ragkit.eval.tasks import EvalItem, cue, instruction, query, read_item, update_item


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


# ------------------------------------------------------------------ plain and bundled JSONL


def test_qa_jsonl_reads_variants_contexts_and_metadata(tmp_path):
    path = write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {"id": "a", "question": "Who?", "answer": "Ann", "answers": ["Ann", "Ann Lee"]},
            {"question": "When?", "answers": ["1990", "in 1990"], "contexts": ["In 1990 ..."]},
            {"question": "Where?", "answer": "Oslo", "gold_sources": ["x.md"], "hops": 2},
        ],
    )
    path.write_text(path.read_text() + "\n", "utf-8")  # a trailing blank line is allowed
    first, second, third = load_qa_jsonl(path)
    assert first.references == ("Ann", "Ann Lee") and first.task == "read"
    assert second.id == "qa-2" and second.reference == "1990"
    assert second.contexts == ("In 1990 ...",)
    assert third.gold_sources == ("x.md",) and third.metadata == {"hops": 2}
    assert query(third) == "Where?"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"question": "Q?", "answer": "A"', "invalid JSON"),
        ('["Q?", "A"]', "JSON object"),
        ('{"answer": "A"}', "'question'"),
        ('{"question": "Q?", "answer": "A", "gold_sources": "x.md"}', None),
        ('{"question": "Q?", "answer": "A", "contexts": [1, 2]}', "'contexts'"),
        ('{"question": "  ", "answer": "A"}', "empty"),
    ],
)
def test_qa_jsonl_errors_name_file_line_and_reason(tmp_path, line, reason):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "fine?", "answer": "yes"}\n' + line + "\n", "utf-8")
    if reason is None:  # a single string where a list is expected is accepted
        assert load_qa_jsonl(path)[1].gold_sources == ("x.md",)
        return
    with pytest.raises(InputError) as err:
        load_qa_jsonl(path)
    assert f"{path}:2" in str(err.value) and reason in str(err.value)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="nope.jsonl"):
        load_qa_jsonl(tmp_path / "nope.jsonl")


def test_task_jsonl_builds_each_generation_kind(tmp_path):
    create = write_jsonl(tmp_path / "c.jsonl", [{"id": "c1", "beginning": "B", "continuing": "C"}])
    update = write_jsonl(
        tmp_path / "u.jsonl",
        [{"beginning": "B", "hallucinated": "H", "corrected": "R", "gold_sources": ["a"]}],
    )
    delete = write_jsonl(tmp_path / "d.jsonl", [{"event": "E", "summary": "S", "note": 1}])
    (c,) = load_task_jsonl(create, "create")
    (u,) = load_task_jsonl(update, "update")
    (d,) = load_task_jsonl(delete, "delete")
    assert (c.query, c.reference) == ("B", "C")
    assert u.query == "B" and u.inputs["hallucinated"] == "H" and u.reference == "R"
    assert u.id == "u-1" and u.gold_sources == ("a",)
    assert (d.query, d.reference, d.metadata) == ("E", "S", {"note": 1})
    with pytest.raises(InputError, match=r"d\.jsonl:1: missing key 'beginning'"):
        load_task_jsonl(delete, "create")
    with pytest.raises(ValueError, match="summarise"):
        load_task_jsonl(delete, "summarise")


def test_items_without_a_reference_load_with_an_empty_one(tmp_path):
    qa = write_jsonl(tmp_path / "q.jsonl", [{"question": "Q?"}, {"question": "R?", "answer": None}])
    assert [i.reference for i in load_qa_jsonl(qa)] == ["", ""]
    create = write_jsonl(tmp_path / "c.jsonl", [{"beginning": "B"}])
    (c,) = load_task_jsonl(create, "create")
    assert (c.query, c.reference) == ("B", "")
    bad = write_jsonl(tmp_path / "b.jsonl", [{"beginning": "B", "continuing": ["x"]}])
    with pytest.raises(InputError, match="'continuing' must be a string"):
        load_task_jsonl(bad, "create")


def test_task_jsonl_reads_questeval_pairs(tmp_path):
    pairs = {"quest_questions": ["Who?", "When?"], "quest_answers": ["Ann", "1901"]}
    path = write_jsonl(tmp_path / "d.jsonl", [{"event": "E", "summary": "Ann, 1901", **pairs}])
    (d,) = load_task_jsonl(path, "delete")
    assert (d.questions, d.answers, d.metadata) == (("Who?", "When?"), ("Ann", "1901"), {})
    bad = write_jsonl(
        tmp_path / "bad.jsonl",
        [{"event": "E", "summary": "S", "quest_questions": ["Who?"], "quest_answers": []}],
    )
    with pytest.raises(InputError, match=r"bad\.jsonl:1: 'quest_questions' and 'quest_answers'"):
        load_task_jsonl(bad, "delete")


def test_bundled_generation_items_ship_questeval_pairs_from_their_reference():
    items = [i for i in load_suite("bundled").items if i.task != "read"]
    assert len(items) == 11
    for item in items:
        assert item.questions and len(item.questions) == len(item.answers)
        assert all(answer in item.reference for answer in item.answers), item.id


# ------------------------------------------------------------------ suites


def make_suite(tmp_path: Path, spec: str) -> Path:
    (tmp_path / "docs").mkdir(exist_ok=True)
    write_jsonl(tmp_path / "q.jsonl", [{"id": "q1", "question": "Q?", "answer": "A"}])
    write_jsonl(tmp_path / "d.jsonl", [{"id": "d1", "event": "E", "summary": "S"}])
    path = tmp_path / "suite.yaml"
    path.write_text(spec, "utf-8")
    return path


def test_suite_from_folder_or_file(tmp_path):
    path = make_suite(
        tmp_path, "name: tiny\ncorpus: docs\ntasks:\n  read: q.jsonl\n  delete: d.jsonl\n"
    )
    for where in (tmp_path, path, str(path)):
        suite = load_suite(where)
        assert suite.name == "tiny" and suite.corpus == (tmp_path / "docs").resolve()
        assert [i.id for i in suite.items] == ["q1", "d1"]
        assert suite.by_task("delete")[0].reference == "S" and suite.by_task("create") == ()


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("tasks:\n  read: q.jsonl\nsplit: test\n", "unknown key 'split'"),
        ("tasks:\n  answer: q.jsonl\n", "'tasks.answer'"),
        ("tasks:\n  read: missing.jsonl\n", "'tasks.read': file"),
        ("corpus: nowhere\ntasks:\n  read: q.jsonl\n", "'corpus'"),
        ("name: x\n", "'tasks'"),
        ("- a\n- b\n", "mapping"),
        ("tasks: [unclosed\n", "invalid YAML"),
        ("tasks:\n  read: q.jsonl\n  create: q.jsonl\n", None),
    ],
)
def test_bad_suite_names_file_key_and_reason(tmp_path, spec, reason):
    path = make_suite(tmp_path, spec)
    if reason is None:  # q.jsonl read as create items lacks 'beginning'
        with pytest.raises(InputError, match="missing key 'beginning'"):
            load_suite(path)
        return
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert str(path) in str(err.value) and reason in str(err.value)


def test_duplicate_ids_in_a_suite_are_rejected(tmp_path):
    path = make_suite(tmp_path, "tasks:\n  read: q.jsonl\n")
    write_jsonl(tmp_path / "d.jsonl", [{"id": "q1", "event": "E", "summary": "S"}])
    path.write_text("tasks:\n  read: q.jsonl\n  delete: d.jsonl\n", "utf-8")
    with pytest.raises(InputError, match="'q1' is used twice"):
        load_suite(path)


def test_unknown_suite_name_is_a_config_error():
    with pytest.raises(ConfigError, match="no-such-suite"):
        load_suite("no-such-suite")


# ------------------------------------------------------------------ tasks and prompts


def test_prompt_language_follows_the_item_text():
    english = read_item("e", "Who runs the plant?", "Tomasz")
    chinese = read_item("z", "哪个城市发放了消费券？", "某市")
    assert english.language == "en" and chinese.language == "zh"
    assert instruction(english).startswith("Answer the question") and "Who runs" in instruction(
        english
    )
    assert "无法推断" in instruction(chinese) and "哪个城市" in instruction(chinese)
    assert cue(chinese) == "\n答案：" and cue(english) == "\nAnswer:"
    assert instruction(chinese, language="en").startswith("Answer the question")


def test_update_retrieves_with_the_opening_and_shows_the_false_text():
    item = update_item("u", "开头。", "错误的续写。", "正确的续写。")
    assert query(item) == "开头。"
    text = instruction(item)
    assert "错误的续写。" in text and "正确的续写。" not in text


def test_eval_item_rejects_inconsistent_fields():
    with pytest.raises(ValueError, match="task must be one of"):
        EvalItem(id="x", task="answer", query="q", inputs={}, reference="r")
    with pytest.raises(ValueError, match="query is empty"):
        read_item("x", " ", "r")
    with pytest.raises(ValueError, match="2 questions but 1 answers"):
        read_item("x", "q", "r", quest_questions=["a?", "b?"], quest_answers=["a"])
    with pytest.raises(ValueError, match="both be set"):
        EvalItem(id="x", task="read", query="q", inputs={}, reference="r", questions=("a?",))


# ------------------------------------------------------------------ CRUD-RAG layouts (composed)


def crud_sample() -> dict:
    news = "海湾镇今年新建了两座码头，预计年底投入使用。"
    return {
        "event_summary": [{"ID": "e1", "type": "doc", "event": "海湾镇建码头", "summary": "摘要"}],
        "continuing_writing": [{"ID": 7, "type": "gen", "beginning": "开头", "continuing": "续"}],
        "hallu_modified": [
            {
                "ID": "h1",
                "type": "kno",
                "newsBeginning": "开头",
                "hallucinatedContinuation": "三座码头",
                "hallucinatedMod": "两座码头",
            }
        ],
        "questanswer_1doc": [
            {
                "ID": "r1",
                "type": "num",
                "questions": "新建了几座码头？",
                "answers": "两座",
                "news1": news,
            }
        ],
        "questanswer_2docs": [
            {
                "ID": "r2",
                "type": "doc",
                "questions": "问？",
                "answers": "答",
                "news1": "甲",
                "news2": "乙",
            }
        ],
        "questanswer_3docs": [],
    }


def test_crud_benchmark_maps_every_section(tmp_path):
    path = tmp_path / "crud.json"
    path.write_text(json.dumps(crud_sample(), ensure_ascii=False), "utf-8")
    items = {item.id: item for item in load_crud_benchmark(path)}
    assert sorted(items) == ["7", "e1", "h1", "r1", "r2"]
    assert items["e1"].task == "delete" and items["e1"].query == "海湾镇建码头"
    assert items["7"].task == "create" and items["7"].reference == "续"
    assert items["h1"].inputs["hallucinated"] == "三座码头" and items["h1"].reference == "两座码头"
    assert items["r1"].reference == "两座" and items["r1"].metadata["type"] == "num"
    assert items["r2"].metadata["hops"] == 2 and items["r2"].contexts == ("甲", "乙")
    assert items["r1"].language == "zh" and instruction(items["r1"]).startswith("请仅根据")


def test_crud_benchmark_errors_name_section_and_key(tmp_path):
    sample = crud_sample()
    del sample["hallu_modified"][0]["hallucinatedMod"]
    path = tmp_path / "crud.json"
    path.write_text(json.dumps(sample, ensure_ascii=False), "utf-8")
    with pytest.raises(InputError, match=r"hallu_modified\[0\]: missing key 'hallucinatedMod'"):
        load_crud_benchmark(path)
    path.write_text('{"questions": []}', "utf-8")
    with pytest.raises(InputError, match="expected an object with any of"):
        load_crud_benchmark(path)
    path.write_text('{"event_summary": [', "utf-8")
    with pytest.raises(InputError, match="invalid JSON at line 1"):
        load_crud_benchmark(path)


def write_news(folder: Path) -> Path:
    news = folder / "news"
    news.mkdir(parents=True)
    (news / "part_a").write_text(
        "[ 2023-07-28 16：40 ] ，正文：海湾镇发放了300万元文旅消费券，可在全镇42家景区使用。\n"
        "\n"
        "2023-07-25 15:14，正文：山城市举办灯会，吸引游客12万人次。\n",
        "utf-8",
    )
    (news / "part_b").write_text(
        "2023-07-26 09:00，正文：河口县的42家商户参加促销活动。\n"
        "2023-07-27 10:00，正文：海湾镇300万元文旅消费券首日领取过半，42家景区客流上升。\n",
        "utf-8",
    )
    (news / "README.md").write_text("not news", "utf-8")
    return folder


def write_factoids(path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "f1": {
                    "key_info": ["海湾镇", "300万元文旅消费券", "全镇42家景区"],
                    "question": ["哪里发放了消费券？", "可在多少家景区使用？", "谁主办？"],
                    "answers": ["海湾镇", "42家", "无法推断"],
                },
                "f2": {
                    "key_info": ["平原市", "80万元", "12万人次"],
                    "question": ["灯会吸引了多少游客？"],
                    "answers": ["12万人次"],
                },
                "f3": {"key_info": ["x"], "question": ["甲？", "乙？"], "answers": ["甲"]},
            },
            ensure_ascii=False,
        ),
        "utf-8",
    )
    return path


def test_crud_news_lines_become_documents(tmp_path):
    root = write_news(tmp_path)
    docs = list(load_crud_news(root))
    assert [d.id for d in docs] == ["part_a#1", "part_a#3", "part_b#1", "part_b#2"]
    first = docs[0]
    assert first.text.startswith("海湾镇发放了") and "正文" not in first.text
    assert first.metadata == {
        "source": "part_a#1",
        "file": "part_a",
        "line": 1,
        "date": "2023-07-28 16:40",
        "header": "2023-07-28 16：40",
    }
    assert docs[1].metadata["date"] == "2023-07-25 15:14"
    assert [d.id for d in load_crud_news(root / "news", limit=3)] == [d.id for d in docs[:3]]
    assert list(load_crud_news(root, limit=0)) == []
    with pytest.raises(InputError, match="does not exist"):
        list(load_crud_news(tmp_path / "missing"))


def test_factoids_skip_unanswerable_and_unpaired_questions(tmp_path):
    items = load_crud_factoids(write_factoids(tmp_path / "f.json"))
    assert [i.id for i in items] == ["f1/0", "f1/1", "f2/0"]
    assert items[1].questions == ("可在多少家景区使用？",) and items[1].answers == ("42家",)
    assert items[1].metadata["key_info"] == ("海湾镇", "300万元文旅消费券", "全镇42家景区")
    assert items[1].gold_sources == ()


def test_answerable_factoids_need_the_answer_and_most_key_facts(tmp_path):
    root = write_news(tmp_path)
    items = answerable_factoids(root, write_factoids(tmp_path / "f.json"))
    by_id = {i.id: i for i in items}
    # "42家" also occurs in part_b#1, an unrelated story; only the two matching stories count,
    # and the one holding all three key facts comes before the one holding two.
    assert by_id["f1/1"].gold_sources == ("part_a#1", "part_b#2")
    assert by_id["f1/1"].metadata["key_facts_found"] == 3
    # the item's questions are one conversation: the follow-up keeps the question before it
    assert by_id["f1/0"].metadata["earlier_questions"] == ()
    assert by_id["f1/1"].metadata["earlier_questions"] == ("哪里发放了消费券？",)
    assert "f2/0" not in by_id  # the answer occurs, but in a story about another city
    assert sorted(by_id) == ["f1/0", "f1/1"]
    assert answerable_factoids(root, tmp_path / "f.json", max_articles=1)[0].gold_sources == (
        "part_a#1",
    )
    loose = answerable_factoids(root, tmp_path / "f.json", min_key_share=0.0)
    assert "f2/0" in {i.id for i in loose}
    with pytest.raises(ValueError, match="min_key_share"):
        answerable_factoids(root, tmp_path / "f.json", min_key_share=1.0)


def test_articles_containing_matches_a_plain_scan():
    texts = ["abc 12家 海湾", "海湾镇 42家", "", "xyz", "42家42家 镇"]
    needles = {"42家", "海湾", "镇", "abc", "q", "12家 海"}
    expected = {n: [i for i, t in enumerate(texts) if n in t] for n in needles}
    assert articles_containing(texts, needles) == {n: v for n, v in expected.items() if v}


# ------------------------------------------------------------------ the real CRUD-RAG data


def test_real_news_ids_are_unique_and_stable(crud_rag_dir):
    first = list(load_crud_news(crud_rag_dir, limit=3000))
    again = list(load_crud_news(crud_rag_dir / "news", limit=3000))
    assert len(first) == 3000 and [d.id for d in first] == [d.id for d in again]
    assert len({d.id for d in first}) == 3000
    assert all(d.text and "，正文：" not in d.text[:20] for d in first)
    dates = [d.metadata["date"] for d in first]
    assert all(re.fullmatch(r"(\d{4}-\d\d-\d\d( \d\d:\d\d)?)?", date) for date in dates)
    assert sum(1 for date in dates if date) > 0.6 * len(dates)


def test_real_factoids_answerable_on_first_3000_articles(crud_rag_dir):
    factoids = crud_rag_dir / "qa" / "questanswer_1doc_factoids.json"
    every = load_crud_factoids(factoids)
    assert 1800 <= len(every) <= 2179
    items = answerable_factoids(crud_rag_dir, factoids, max_articles=3000)
    texts = {d.id: d.text for d in load_crud_news(crud_rag_dir, limit=3000)}
    print(f"answerable factoid questions on the first 3000 articles: {len(items)}")
    assert 80 <= len(items) <= 200
    for item in items:
        assert item.questions == (item.query,)
        for source in item.gold_sources:
            assert item.reference in texts[source], (item.id, source)


def test_evaluating_a_suite_with_no_items_is_an_error_naming_it(tmp_path):
    from typer.testing import CliRunner

    from ragkit.cli import app
    from ragkit.eval.runner import EvalOptions, evaluate

    (tmp_path / "questions.jsonl").write_text("\n", encoding="utf-8")
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: empty-one\ntasks: {read: questions.jsonl}\n", encoding="utf-8")
    expected = f"suite 'empty-one' ({suite}): no items to evaluate"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        evaluate(str(suite), runs=tmp_path / "runs", options=EvalOptions(use_ragas=False))
    result = CliRunner().invoke(
        app, ["eval", "--suite", str(suite), "--no-ragas", "--runs", str(tmp_path / "runs")]
    )
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"error: {expected}"]
    assert not (tmp_path / "runs").exists()
