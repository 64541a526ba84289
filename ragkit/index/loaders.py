"""Turn files and folders (txt, md, html, pdf, json, jsonl) into Documents with stable ids."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.errors import InputError
from ragkit.index.decoding import Undecodable, decode
from ragkit.index.html_text import html_text
from ragkit.index.sources import LONE_SURROGATE, escape_reason, real_source, stored_source
from ragkit.types import Document

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
RESERVED_KEYS = ("source", "content_hash", "format", "file_name")
FORMATS = {
    ".txt": "text",
    ".md": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".json": "json",
    ".jsonl": "jsonl",
}
_TOO_DEEP = "nested too deeply to parse"

logger = logging.getLogger("ragkit")


@dataclass(frozen=True, slots=True)
class LoadIssue:
    """A file or record that was skipped, and why; loading goes on past it. `path` is printable
    (see `ragkit.index.sources`). With `skipped` false it is a note about a file that was loaded,
    such as a name stored escaped."""

    path: str
    reason: str
    skipped: bool = True


class _Skip(Exception):
    """A whole file cannot become documents; the message is the reason."""


def load_documents(
    paths: Iterable[str | Path],
    *,
    text_field: str = "text",
    on_issue: Callable[[LoadIssue], None] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[Document]:
    """Yield one Document per text file, or per record of a JSON/JSONL file.

    Paths are checked here, before iteration starts, so a typo fails at once rather than after
    a long ingestion. Files that cannot be read (empty, binary, too large, malformed) are
    reported through `on_issue` (logged on the "ragkit" logger when None) and skipped.
    """
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be > 0, but got {max_bytes}")
    if not text_field:
        raise ValueError(f"text_field must be a non-empty string, but got {text_field!r}")
    roots = [Path(p).expanduser() for p in ([paths] if isinstance(paths, str | Path) else paths)]
    for root in roots:
        if not root.exists():
            if root.is_symlink():
                raise InputError(f"{root}: a symbolic link to nothing (broken, or a loop)")
            raise InputError(f"{root}: no such file or folder")
        if root.is_file() and root.suffix.lower() not in FORMATS:
            known = ", ".join(sorted(FORMATS))
            raise InputError(f"{root}: unsupported file type {root.suffix!r} (expected {known})")
    report = on_issue if on_issue is not None else _log_issue
    return _iter_documents(roots, text_field, report, max_bytes)


def _log_issue(issue: LoadIssue) -> None:
    logger.warning("skipped %s: %s", issue.path, issue.reason)


def _iter_documents(
    roots: list[Path], text_field: str, report: Callable[[LoadIssue], None], max_bytes: int
) -> Iterator[Document]:
    seen: set[Path] = set()
    for root in roots:
        for path in _walk(root, report):
            try:
                resolved = path.resolve(strict=True)
            except (OSError, RuntimeError) as exc:  # RuntimeError: a link loop before 3.13
                report(LoadIssue(stored_source(os.path.abspath(path)), _unresolvable(path, exc)))
                continue
            if resolved in seen:
                continue
            seen.add(resolved)
            stored = stored_source(str(resolved))
            try:
                for count, doc in enumerate(
                    _load_file(resolved, path.name, text_field, report, max_bytes)
                ):
                    if count == 0 and stored != str(resolved):  # loaded: say how it is named
                        report(LoadIssue(stored, escape_reason(str(resolved)), skipped=False))
                    yield doc
            except (_Skip, Undecodable) as skip:
                report(LoadIssue(stored, str(skip)))


def _walk(root: Path, report: Callable[[LoadIssue], None]) -> Iterator[Path]:
    """Files under `root` in sorted order, so ids and chunk order repeat run to run.

    Only names are looked at here; whether an entry is a readable regular file is decided
    when it is opened, so one odd entry is reported rather than ending the walk.
    """
    if not root.is_dir():
        yield root
        return

    def unreadable(exc: OSError) -> None:
        folder = stored_source(os.fsdecode(exc.filename))
        report(LoadIssue(folder, f"unreadable folder: {exc.strerror or exc}"))

    for folder, dirs, files in os.walk(root, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder, name)
            if not name.startswith(".") and path.suffix.lower() in FORMATS:
                yield path


def _unresolvable(path: Path, exc: BaseException) -> str:
    if isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP:
        return "symbolic link loop"
    if isinstance(exc, FileNotFoundError):
        if path.is_symlink():
            return "broken symbolic link (its target does not exist)"
        return "vanished before it could be read"
    return f"unreadable: {getattr(exc, 'strerror', None) or exc}"


_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)


def _not_regular(mode: int) -> str:
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    return f"not a regular file ({kind})"


def _read_regular(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file; anything else is refused before it is opened.

    Opening a named pipe for reading blocks until a writer appears, and opening a device can
    have side effects, so the kind of file is checked first. The open is non-blocking and
    checked again, in case the entry was swapped for a pipe in between.
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise _Skip(_not_regular(info.st_mode))
        if info.st_size > max_bytes:
            raise _Skip(f"too large ({info.st_size} bytes > max_bytes {max_bytes})")
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise _Skip(_not_regular(mode))
            data = handle.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise _Skip("vanished before it could be read") from exc
    except OSError as exc:
        raise _Skip(f"unreadable: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise _Skip(f"too large (over max_bytes {max_bytes})")
    return data


def _load_file(
    path: Path,
    name: str,
    text_field: str,
    report: Callable[[LoadIssue], None],
    max_bytes: int,
) -> Iterator[Document]:
    """Documents of one file; `name` is the name it was found under (a symbolic link's own
    name), which decides the format, since a link's target may have no extension at all.

    A name that is not valid UTF-8 (or holds a control character) is stored in its escaped,
    printable form (`ragkit.index.sources`); the document id hashes the real path, so it is the same
    whichever form the store keeps."""
    source = stored_source(str(path))
    fmt = FORMATS.get(Path(name).suffix.lower())
    if fmt is None:
        raise _Skip(f"unsupported file type {Path(name).suffix!r}")
    data = _read_regular(path, max_bytes)
    base = {"format": fmt, "file_name": stored_source(name)}
    if fmt in ("text", "markdown", "html", "pdf"):
        doc = _whole_file(data, fmt, source, base)
        del data  # not kept alive beside the text while the document is in use
        yield doc
    else:
        text, encoding = decode(data)
        del data
        for index, record, where in _records(text, fmt, source, report):
            value = record.get(text_field)
            if not isinstance(value, str):
                report(LoadIssue(source, f"{where}: no string field {text_field!r}"))
                continue
            if not value.strip():
                report(LoadIssue(source, f"{where}: empty {text_field!r}"))
                continue
            fields = _scalar_fields(record, text_field)
            try:
                yield _document(f"{source}#{index}", value, {**fields, **base})
            except _Skip as skip:
                report(LoadIssue(source, f"{where}: {skip}"))


def _whole_file(data: bytes, fmt: str, source: str, base: dict[str, Any]) -> Document:
    if fmt == "html":
        text, title = _html_text(data)
        return _document(source, text, {**base, "title": title} if title else base)
    if fmt == "pdf":
        text, extra = _pdf_text(data)
        return _document(source, text, {**base, **extra})
    text, encoding = decode(data)
    return _document(source, text, {**base, "encoding": encoding})


def _document(source: str, text: str, extra: dict[str, Any]) -> Document:
    """A document under its stored `source`; its id hashes the real path behind that form, so
    ids do not change with the form a path is stored in."""
    if not text.strip():
        raise _Skip("empty")
    for key, value in (("text", text), *extra.items()):
        for part in (key, value):
            if isinstance(part, str) and (found := LONE_SURROGATE.search(part)) is not None:
                raise _Skip(
                    f"'{stored_source(key)}' is not valid Unicode "
                    f"(a lone surrogate at character {found.start()})"
                )
    content_hash = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    real = real_source(source)
    source_hash = hashlib.sha1(real.encode("utf-8", "surrogatepass")).hexdigest()
    metadata = {**extra, "source": source, "content_hash": content_hash}
    return Document(id=f"{source_hash[:12]}-{content_hash[:16]}", text=text, metadata=metadata)


def _html_text(data: bytes) -> tuple[str, str]:
    """Visible text with block elements on their own lines; the <title> goes to metadata.

    bs4's encoding detection (BOM, <meta charset>, then guessing) decodes the bytes; the text
    itself is read from the tag stream, which stays linear in the size of any page.
    """
    from bs4 import UnicodeDammit

    if b"\x00" in data and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _Skip("binary or undecodable")
    markup = UnicodeDammit(data, is_html=True).unicode_markup
    if markup is None:
        raise _Skip("binary or undecodable")
    return html_text(markup)


def _pdf_text(data: bytes) -> tuple[str, dict[str, Any]]:
    """Text of every page, pages separated by a blank line; page count (and title) as metadata."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise _Skip("encrypted PDF")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or ""
    except RecursionError as exc:
        raise _Skip(f"unreadable PDF: {_TOO_DEEP}") from exc
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise _Skip(f"unreadable PDF: {exc}") from exc
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text:
        raise _Skip("empty (no extractable text; a scanned PDF needs OCR first)")
    extra: dict[str, Any] = {"pages": len(pages)}
    if isinstance(title, str) and title.strip():
        extra["title"] = title.strip()
    return text, extra


def _records(
    text: str, fmt: str, source: str, report: Callable[[LoadIssue], None]
) -> Iterator[tuple[int, dict[str, Any], str]]:
    """(index, object, where) for each JSON object; `where` names the record in issue messages."""
    if fmt == "jsonl":
        for index, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                report(LoadIssue(source, f"line {index + 1}: invalid JSON ({exc.msg})"))
                continue
            except RecursionError:
                report(LoadIssue(source, f"line {index + 1}: {_TOO_DEEP}"))
                continue
            if not isinstance(record, dict):
                report(LoadIssue(source, f"line {index + 1}: not a JSON object"))
                continue
            yield index, record, f"line {index + 1}"
        return
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Skip(f"invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from exc
    except RecursionError as exc:
        raise _Skip(_TOO_DEEP) from exc
    if isinstance(parsed, dict):
        yield 0, parsed, "object"
        return
    if not isinstance(parsed, list):
        raise _Skip("expected a JSON object or a list of objects")
    for index, record in enumerate(parsed):
        if isinstance(record, dict):
            yield index, record, f"index {index}"
        else:
            report(LoadIssue(source, f"index {index}: not a JSON object"))


def _scalar_fields(record: dict[str, Any], text_field: str) -> dict[str, Any]:
    """Scalar fields other than the text, as metadata; a field named like a reserved key is kept
    under `record_<key>` so the loader's own provenance keys stay trustworthy."""
    fields: dict[str, Any] = {}
    for key, value in record.items():
        if key == text_field or value is None or not isinstance(value, str | int | float | bool):
            continue
        fields[f"record_{key}" if key in RESERVED_KEYS else str(key)] = value
    return fields
