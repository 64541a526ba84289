"""RAGQuestEval's judge: its cache (a rerun asks nothing twice), its name in the report, and
bad input (no reference, an empty output, a judge that is down or answers garbage) ending as
a note on the item, never a crash or a silent 0. Servers are real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from llama_server_support import free_port, llama_server

from ragkit.eval.datasets import Suite, load_suite
from ragkit.eval.judge import Judge, JudgeCache, make_judge
from ragkit.eval.quest_pass import NO_QUESTION, merge, run_questeval
from ragkit.eval.runner import EvalOptions, EvalRunner, limit_items
from ragkit.eval.tasks import create_item, read_item
from ragkit.generation.scripted import ScriptedGenerator
from ragkit.types import Prompt

REFERENCE = "The Eiffel Tower was completed in 1889. It was designed by Gustave Eiffel's company."
QUESTION_LIST = "1. When was the Eiffel Tower completed?\n2. Whose company designed the tower?"


def scripted_judge(cache: JudgeCache | None) -> Judge:
    """Question writing and answering by rules (the first key found in a prompt wins): an
    output marked "SILENT" answers the date but not the designer."""
    generator = ScriptedGenerator(
        replies={
            "write at most": QUESTION_LIST,
            "When was": "1889",
            "SILENT": "cannot infer",  # in the output under test only
            "Whose company": "Gustave Eiffel's company",
        },
        max_new_tokens=64,
    )
    return Judge(generator, "scripted rules", cache)


def test_cache_answers_a_rerun_without_calling_the_generator(tmp_path):
    judge = scripted_judge(JudgeCache(tmp_path / "cache.sqlite"))
    prompts = [Prompt.plain("When was it built?"), Prompt.plain("Whose company built it?")]
    assert judge.batch(prompts) == ["1889", "Gustave Eiffel's company"]
    assert judge.calls == 2
    again = scripted_judge(JudgeCache(tmp_path / "cache.sqlite"))  # a new run, same file
    assert again.batch(prompts) == ["1889", "Gustave Eiffel's company"]
    assert again.calls == 0 and again.generator.prompts == []
    assert again.batch(prompts, max_new_tokens=4)  # other settings are another question
    assert again.calls == 2


def _records(items, outputs):
    return [
        {"pipeline": "p", "item_id": item.id, "task": item.task, "output": output}
        for item, output in zip(items, outputs, strict=True)
    ]


def test_questeval_pass_scores_caches_and_skips_what_it_cannot_score(tmp_path):
    items = [
        create_item("c1", "Paris news.", REFERENCE),
        create_item("c2", "Paris news.", REFERENCE),
        create_item("c3", "Paris news.", REFERENCE),
        read_item("r1", "When?", ""),  # no reference
    ]
    outputs = ["The tower was completed in 1889. SILENT", "", REFERENCE, "1889"]
    records = _records(items, outputs)
    by_id = {i.id: i for i in items}
    judge = scripted_judge(JudgeCache(tmp_path / "cache.sqlite"))
    results = run_questeval(records, by_id, judge, tmp_path)
    got = {r["item_id"]: r for r in results}
    assert got["c1"]["scores"]["crud_quest_recall"] == 0.5  # the designer went unanswered
    assert got["c1"]["scores"]["crud_quest_f1"] == 1.0  # CRUD-RAG: over answered ones only
    assert got["c1"]["scores"]["quest_f1_incl_unanswered"] == 0.5
    assert got["c1"]["output_answers"] == ["1889", "无法推断"]
    assert got["c3"]["scores"]["crud_quest_recall"] == 1.0
    assert got["c2"] == {**got["c2"], "skipped": "empty output"} and "scores" not in got["c2"]
    assert got["r1"]["skipped"] == "no reference" and "scores" not in got["r1"]
    assert {r["judge"] for r in results} == {"scripted rules"}
    first_calls = judge.calls
    assert first_calls > 0

    rerun = scripted_judge(JudgeCache(tmp_path / "cache.sqlite"))
    assert len(run_questeval(records, by_id, rerun, tmp_path)) == len(results)
    assert rerun.calls == 0  # every result was in questeval.jsonl
    (tmp_path / "questeval.jsonl").unlink()
    fresh = scripted_judge(JudgeCache(tmp_path / "cache.sqlite"))
    assert run_questeval(records, by_id, fresh, tmp_path) == results
    assert fresh.calls == 0  # recomputed, but every reply came from the cache
    other = run_questeval(records, by_id, fresh, tmp_path, max_questions=1)
    assert len(other) == 2 * len(results)  # another setup is scored anew, not reused
    assert len({r["setup"] for r in other}) == 2


def test_merge_adds_this_judges_scores_and_notes_only():
    records = [{"pipeline": "p", "item_id": "a", "scores": {"crud_bleu": 0.5}}]
    results = [
        {"pipeline": "p", "item_id": "a", "judge": "j1", "scores": {"crud_quest_f1": 1.0}},
        {"pipeline": "p", "item_id": "a", "judge": "j2", "note": "QuestEval not scored: x"},
    ]
    (one,) = merge(records, results, "j1")
    assert one["scores"] == {"crud_bleu": 0.5, "crud_quest_f1": 1.0} and "notes" not in one
    (two,) = merge(records, results, "j2")
    assert two["notes"] == ["QuestEval not scored: x"] and "crud_quest_f1" not in two["scores"]
    assert records[0]["scores"] == {"crud_bleu": 0.5}


# ------------------------------------------------------------------ real HTTP servers


class _Garbage(BaseHTTPRequestHandler):
    mode = "not-json"
    requests = 0

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, body: bytes, kind: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        type(self).requests += 1
        if self.mode == "not-json":
            self._send(b"<html>garbage</html>", "text/html")
        else:
            self._send(json.dumps({"data": [{"id": "junk-model"}]}).encode())

    def do_POST(self) -> None:
        type(self).requests += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.mode == "not-json":
            self._send(b"<html>garbage</html>", "text/html")
        elif self.mode == "no-choices":
            self._send(json.dumps({"object": "nonsense"}).encode())
        else:  # a well-formed reply whose text is no question and no answer
            reply = {"choices": [{"message": {"role": "assistant", "content": "### ?!? ###"}}]}
            self._send(json.dumps(reply).encode())


@contextlib.contextmanager
def garbage_server(mode: str) -> Iterator[str]:
    handler = type("Handler", (_Garbage,), {"mode": mode, "requests": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


CREATES = [create_item(f"c{i}", "Paris news.", REFERENCE) for i in range(5)]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("not-json", "QuestEval not scored: "),
        ("no-choices", "QuestEval not scored: "),
        ("symbols", NO_QUESTION),
    ],
)
def test_a_judge_answering_garbage_leaves_a_note_per_item(tmp_path, mode, reason):
    records = _records(CREATES, ["The tower was completed in 1889."] * len(CREATES))
    with garbage_server(mode) as url:
        judge = make_judge(url, cache_path=tmp_path / "cache.sqlite", timeout_s=10)
        results = run_questeval(records, {i.id: i for i in CREATES}, judge, tmp_path)
    assert len(results) == len(CREATES)
    for result in results:
        assert "scores" not in result
        assert result["note"].startswith(reason), result["note"]
    if mode == "symbols":
        assert {r["judge"] for r in results} == {f"junk-model at {url}/v1"}


def test_a_judge_that_is_down_leaves_a_note_per_item_and_is_not_retried_forever(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    records = _records(CREATES, ["The tower was completed in 1889."] * len(CREATES))
    judge = make_judge(url, model="any", cache_path=tmp_path / "cache.sqlite", timeout_s=5)
    results = run_questeval(records, {i.id: i for i in CREATES}, judge, tmp_path)
    notes = [r["note"] for r in results]
    assert all(n.startswith("QuestEval not scored: ") for n in notes)
    assert "unreachable" in notes[0]
    assert "not asked again" in notes[-1]  # after three failures in a row
    assert all("scores" not in r for r in results)


@pytest.mark.slow
def test_eval_report_notes_bad_items_and_names_the_judge(tmp_path, scripted_spec):
    from ragkit import build

    silent = scripted_spec.override(generator={"kind": "scripted", "max_new_tokens": 7})
    build.register_generator(
        silent.generator,
        ScriptedGenerator(replies={"SILENT": ""}, max_new_tokens=7),
    )
    bundled = load_suite("bundled")
    extra = (
        read_item("no-ref", "Who runs the ferry company?", ""),
        read_item("empty-out", "SILENT: who runs the ferry company?", "the Skerrow family"),
    )
    items = (*limit_items(bundled.by_task("create"), 1), *extra)
    suite = Suite(name="bad-input", items=items, corpus=bundled.corpus)
    with garbage_server("no-choices") as url:
        options = EvalOptions(use_ragas=False, judge_url=url, judge_cache=tmp_path / "cache.sqlite")
        runner = EvalRunner(
            suite, [silent], tmp_path / "run", store_location=str(tmp_path / "idx"), options=options
        )
        result = runner.run(list(items), progress=False)
    report = result.report
    assert "RAGQuestEval judge: junk-model at " in report
    assert "no-ref: no reference: only retrieval is scored" in report
    assert "empty-out: empty output: CRUD-RAG's scores, similarity and QuestEval left out" in report
    create_id = items[0].id
    assert f"{create_id}: QuestEval not scored: " in report
    by_id = {r["item_id"]: r for r in result.records}
    assert "crud_bleu" not in by_id["no-ref"]["scores"]
    assert "crud_rouge_l" not in by_id["empty-out"]["scores"]
    assert "embedding_similarity" not in by_id["empty-out"]["scores"]
    assert by_id["empty-out"]["scores"]["smoothed_bleu4"] == 0.0
    assert not any(
        math.isnan(v) for r in result.records for v in r["scores"].values() if isinstance(v, float)
    )
    page = (tmp_path / "run" / "report.html").read_text()
    assert "no reference: only retrieval is scored" in page


@pytest.mark.slow
@pytest.mark.llama_server
def test_llama_server_judge_scores_and_a_rerun_asks_nothing(tmp_path):
    items = [
        create_item(
            "c1",
            "西安发布消息。",
            "陕西西安市发放500万元体育类电子消费券，市民可以在全市173家体育场馆使用。",
        )
    ]
    records = _records(items, ["西安市发放了500万元体育消费券。"])
    with llama_server(tmp_path, parallel=2) as url:
        judge = make_judge(url, cache_path=tmp_path / "cache.sqlite")
        (result,) = run_questeval(records, {"c1": items[0]}, judge, tmp_path)
        assert result["judge"].endswith(f"at {url}/v1") and judge.calls > 0
        assert result["questions"], result
        scores = result["scores"]
        assert 0.0 <= scores["crud_quest_f1"] <= 1.0 and 0.0 <= scores["crud_quest_recall"] <= 1.0
        (tmp_path / "questeval.jsonl").unlink()
        again = make_judge(url, cache_path=tmp_path / "cache.sqlite")
        (repeat,) = run_questeval(records, {"c1": items[0]}, again, tmp_path)
        assert again.calls == 0 and repeat == result
