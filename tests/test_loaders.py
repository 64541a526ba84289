"""Loading real files of every supported format, built in tmp_path at test time."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest

from ragkit.errors import InputError
from ragkit.index.loaders import LoadIssue, load_documents


def _load(*paths: Path, **kwargs):
    issues: list[LoadIssue] = []
    docs = list(load_documents(paths, on_issue=issues.append, **kwargs))
    return docs, issues


def test_txt_and_md_load_as_is_with_provenance(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text("First line.\n\n  Second paragraph.\n", encoding="utf-8")
    md = tmp_path / "b.md"
    md.write_text("# Title\n\nSome *markdown* text.", encoding="utf-8")

    docs, issues = _load(tmp_path)

    assert issues == []
    assert [d.metadata["file_name"] for d in docs] == ["a.txt", "b.md"]
    a, b = docs
    assert a.text == "First line.\n\n  Second paragraph.\n"
    assert b.text == "# Title\n\nSome *markdown* text."
    assert a.metadata["format"] == "text" and b.metadata["format"] == "markdown"
    assert a.metadata["source"] == str(txt.resolve())
    assert a.source == str(txt.resolve())
    assert a.metadata["content_hash"] == hashlib.sha256(a.text.encode()).hexdigest()


def test_id_follows_source_and_content_hash(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("hello", encoding="utf-8")
    (doc,) = load_documents([path])
    source = str(path.resolve())
    expected = (
        hashlib.sha1(source.encode()).hexdigest()[:12]
        + "-"
        + hashlib.sha256(b"hello").hexdigest()[:16]
    )
    assert doc.id == expected


def test_ids_are_stable_and_change_with_content(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("The first version.", encoding="utf-8")
    first = list(load_documents([tmp_path]))
    again = list(load_documents([path]))
    assert [d.id for d in first] == [d.id for d in again]

    path.write_text("The second version.", encoding="utf-8")
    (changed,) = load_documents([path])
    assert changed.id != first[0].id
    assert changed.source == first[0].source
    assert changed.id.split("-")[0] == first[0].id.split("-")[0]


def test_html_drops_scripts_keeps_blocks_apart_and_reads_title(tmp_path):
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><title>My Page</title><style>p {color: red}</style></head><body>"
        "<script>var secret = 1;</script><h1>Heading</h1><p>Hello <b>world</b>, again.</p>"
        "<ul><li>one</li><li>two</li></ul><noscript>enable js</noscript></body></html>",
        encoding="utf-8",
    )
    (doc,) = load_documents([page])
    assert doc.metadata["title"] == "My Page"
    assert doc.metadata["format"] == "html"
    assert "secret" not in doc.text and "color" not in doc.text and "enable js" not in doc.text
    assert "Hello world, again." in doc.text
    lines = doc.text.splitlines()
    assert "Heading" in lines and "one" in lines and "two" in lines


def test_htm_with_meta_charset_gbk(tmp_path):
    page = tmp_path / "cn.htm"
    html = (
        '<html><head><meta charset="gbk"><title>新闻</title></head>'
        "<body><p>北京是中华人民共和国的首都。</p></body></html>"
    )
    page.write_bytes(html.encode("gbk"))
    (doc,) = load_documents([page])
    assert doc.text == "北京是中华人民共和国的首都。"
    assert doc.metadata["title"] == "新闻"


def test_pdf_text_of_all_pages_and_page_count(tmp_path):
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    path = tmp_path / "report.pdf"
    pdf = canvas.Canvas(str(path), pagesize=A4)
    pdf.setTitle("Quarterly report")
    pdf.drawString(72, 750, "Revenue grew by twelve percent.")
    pdf.showPage()
    pdf.drawString(72, 750, "Costs fell in the second quarter.")
    pdf.showPage()
    pdf.save()

    (doc,) = load_documents([path])
    assert doc.metadata["pages"] == 2
    assert doc.metadata["format"] == "pdf"
    assert doc.metadata["title"] == "Quarterly report"
    assert "Revenue grew by twelve percent." in doc.text
    assert "Costs fell in the second quarter." in doc.text
    assert doc.text.index("Revenue") < doc.text.index("Costs")


def test_pdf_without_text_and_broken_pdf_are_issues(tmp_path):
    from reportlab.pdfgen import canvas

    blank = tmp_path / "blank.pdf"
    pdf = canvas.Canvas(str(blank))
    pdf.showPage()
    pdf.save()
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\nthis is not really a pdf")

    docs, issues = _load(blank, broken)
    assert docs == []
    reasons = {Path(i.path).name: i.reason for i in issues}
    assert reasons["blank.pdf"].startswith("empty")
    assert "PDF" in reasons["broken.pdf"]


def test_json_list_records_metadata_and_missing_text_field(tmp_path):
    path = tmp_path / "items.json"
    records = [
        {"text": "Alpha record.", "id": "a1", "year": 2023, "score": 0.5, "ok": True},
        {"text": "Beta record.", "tags": ["x", "y"], "extra": {"k": 1}, "none": None},
        {"title": "no text here"},
        {"text": "Gamma record.", "source": "https://example.org/g", "format": "web"},
    ]
    path.write_text(json.dumps(records), encoding="utf-8")

    docs, issues = _load(path)

    assert [d.text for d in docs] == ["Alpha record.", "Beta record.", "Gamma record."]
    alpha, beta, gamma = docs
    assert alpha.metadata["source"] == f"{path.resolve()}#0"
    assert gamma.metadata["source"] == f"{path.resolve()}#3"
    assert alpha.metadata["id"] == "a1" and alpha.metadata["year"] == 2023
    assert alpha.metadata["ok"] is True and alpha.metadata["score"] == 0.5
    assert not {"tags", "extra", "none", "text"} & set(beta.metadata)
    assert gamma.metadata["record_source"] == "https://example.org/g"
    assert gamma.metadata["record_format"] == "web"
    assert gamma.metadata["format"] == "json"
    assert issues == [LoadIssue(str(path.resolve()), "index 2: no string field 'text'")]


def test_json_single_object_and_custom_text_field(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"body": "正文内容。", "lang": "zh"}), encoding="utf-8")
    (doc,) = load_documents([path], text_field="body")
    assert doc.text == "正文内容。"
    assert doc.metadata["lang"] == "zh"
    assert doc.metadata["source"].endswith("one.json#0")


def test_jsonl_lines_bad_lines_and_missing_field(tmp_path):
    path = tmp_path / "rows.jsonl"
    lines = [
        json.dumps({"text": "row one", "n": 1}),
        "",
        "{not json",
        json.dumps({"content": "wrong field"}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"text": "row six", "n": 6}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    docs, issues = _load(path)

    assert [(d.text, d.metadata["n"]) for d in docs] == [("row one", 1), ("row six", 6)]
    assert docs[1].metadata["source"] == f"{path.resolve()}#5"
    assert docs[0].metadata["format"] == "jsonl"
    assert [i.reason.split(":")[0] for i in issues] == ["line 3", "line 4", "line 5"]
    assert "no string field 'text'" in issues[1].reason
    assert all(i.path == str(path.resolve()) for i in issues)


def test_invalid_json_file_is_an_issue(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"text": "unterminated', encoding="utf-8")
    docs, issues = _load(path)
    assert docs == []
    assert len(issues) == 1 and "invalid JSON" in issues[0].reason


def test_empty_and_whitespace_files_are_issues(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.md").write_text(" \n\t\n", encoding="utf-8")
    (tmp_path / "fine.txt").write_text("content", encoding="utf-8")

    docs, issues = _load(tmp_path)

    assert [d.text for d in docs] == ["content"]
    assert sorted((Path(i.path).name, i.reason) for i in issues) == [
        ("blank.md", "empty"),
        ("empty.txt", "empty"),
    ]


def test_binary_files_are_issues_not_crashes(tmp_path):
    (tmp_path / "random.txt").write_bytes(os.urandom(4096) + b"\x00")
    (tmp_path / "image.md").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    (tmp_path / "noise.txt").write_bytes(bytes(range(1, 32)) * 100)

    docs, issues = _load(tmp_path)

    assert docs == []
    assert sorted(Path(i.path).name for i in issues) == ["image.md", "noise.txt", "random.txt"]
    assert {i.reason for i in issues} == {"binary or undecodable"}


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("北京是中华人民共和国的首都。它有三千多年的历史！上海是经济中心；广州在哪里？", "gbk"),
        ("你好，世界。", "gbk"),
        ("朱镕基总理讲话。数据：100万元", "gb18030"),
        ("Le café est très bon. Ça coûte deux euros à Orléans.", "latin-1"),
        ("Grüße aus München", "latin-1"),
        ("“Quotes” — and… élève", "cp1252"),
        ("Привет мир, как дела у тебя сегодня? Всё хорошо, спасибо.", "cp1251"),
    ],
)
def test_legacy_encodings_decode_correctly(tmp_path, text, encoding):
    path = tmp_path / "legacy.txt"
    path.write_bytes(text.encode(encoding))
    (doc,) = load_documents([path])
    assert doc.text == text


def test_utf8_and_utf16_boms_are_handled(tmp_path):
    (tmp_path / "bom8.txt").write_bytes("\ufeff中文 text".encode())
    (tmp_path / "bom16.txt").write_bytes("中文 text".encode("utf-16"))
    docs, issues = _load(tmp_path)
    assert issues == []
    assert [d.text for d in docs] == ["中文 text", "中文 text"]


def test_twenty_megabyte_file_loads(tmp_path):
    path = tmp_path / "big.txt"
    line = "这是一个很长的测试文件。This is a long test file line.\n"
    count = 20 * 1024 * 1024 // len(line.encode()) + 1
    path.write_text(line * count, encoding="utf-8")
    assert path.stat().st_size >= 20 * 1024 * 1024

    (doc,) = load_documents([path])
    assert len(doc.text) == len(line) * count
    assert doc.text.endswith(line)


def test_file_over_max_bytes_is_an_issue(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("x" * 2000, encoding="utf-8")
    docs, issues = _load(path, max_bytes=1000)
    assert docs == []
    assert len(issues) == 1 and issues[0].reason.startswith("too large (2000 bytes")


def test_missing_path_raises_before_iteration(tmp_path):
    (tmp_path / "ok.txt").write_text("fine", encoding="utf-8")
    missing = tmp_path / "nope" / "missing.txt"
    with pytest.raises(InputError, match="no such file or folder") as info:
        load_documents([tmp_path, missing])  # not iterated: the call itself must fail
    assert str(missing) in str(info.value)


def test_unknown_extension_explicit_raises_in_folder_skipped(tmp_path):
    odd = tmp_path / "data.xyz"
    odd.write_text("ignored", encoding="utf-8")
    (tmp_path / "keep.txt").write_text("kept", encoding="utf-8")
    with pytest.raises(InputError, match=r"data\.xyz.*unsupported file type '\.xyz'"):
        load_documents([odd])
    docs, issues = _load(tmp_path)
    assert [d.text for d in docs] == ["kept"]
    assert issues == []


def test_folders_recurse_sorted_and_skip_hidden(tmp_path):
    for rel in ["b/z.txt", "b/a.md", "a.txt", "c/d/e.txt", ".hidden/x.txt", "b/.secret.txt"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel, encoding="utf-8")
    docs = list(load_documents([tmp_path, tmp_path / "a.txt"]))  # a.txt twice: loaded once
    assert [d.text for d in docs] == ["a.txt", "b/a.md", "b/z.txt", "c/d/e.txt"]


def test_single_path_string_is_accepted(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("solo", encoding="utf-8")
    assert [d.text for d in load_documents(str(path))] == ["solo"]


def test_issues_are_logged_without_callback(tmp_path, caplog):
    (tmp_path / "empty.txt").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="ragkit"):
        assert list(load_documents([tmp_path])) == []
    assert any("empty.txt" in r.getMessage() and "empty" in r.getMessage() for r in caplog.records)


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="max_bytes must be > 0, but got 0"):
        load_documents([tmp_path], max_bytes=0)
    with pytest.raises(ValueError, match="text_field"):
        load_documents([tmp_path], text_field="")
