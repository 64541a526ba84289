"""Source paths as the store keeps them: printable text that maps back to the exact file name.

A POSIX file name is bytes. Python hands a name that is not valid UTF-8 over as text holding
lone surrogates (`os.fsdecode`'s surrogateescape), which chroma cannot store, and a name may hold
a newline or another control character, which would break every one-line report and citation
that shows it. Such a name is stored escaped, in the notation of Python string literals:

- `\\xNN` for a byte that is not UTF-8 (what `bytes.decode("utf-8", "backslashreplace")` writes),
- `\\n`, `\\r`, `\\t`, and `\\uNNNN` for any other control character, line or paragraph
  separator, or lone surrogate,
- `\\\\` for a backslash, so that every backslash in a stored source starts an escape.

Every other name, which is nearly all of them, is stored as it is. A stored source holds a
backslash only when it was escaped, so `real_source` inverts `stored_source` exactly and two
different names never share a stored form; the stored form is the same on every run, which is
what lets a re-run find the file unchanged.
"""

from __future__ import annotations

import re
import unicodedata

_NAMED = {"\n": "n", "\r": "r", "\t": "t", "\\": "\\"}
_UNNAMED = {value: key for key, value in _NAMED.items()}
# Categories escaped: control, surrogate, line and paragraph separators.
_ODD = frozenset({"Cc", "Cs", "Zl", "Zp"})
_ESCAPE = re.compile(r"\\(?:x([89a-f][0-9a-f])|u([0-9a-f]{4})|([nrt\\]))")
# Text chroma cannot store (it is not valid UTF-8): JSON's `\\ud800` escapes, a broken PDF text
# map, or a path straight from `os.fsdecode`.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_STORED = re.compile(r"(?:[^\\]|\\(?:x[89a-f][0-9a-f]|u[0-9a-f]{4}|[nrt\\]))*")


def _odd(char: str) -> bool:
    return char == "\\" or unicodedata.category(char) in _ODD


def needs_escape(path: str) -> bool:
    """Whether `path` is stored escaped: it holds a byte that is not UTF-8, a control character
    or line separator, or a backslash."""
    return any(_odd(c) for c in path)


def _escape(char: str) -> str:
    code = ord(char)
    if char in _NAMED:
        return "\\" + _NAMED[char]
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    if _odd(char):
        return f"\\u{code:04x}"
    return char


def stored_source(path: str) -> str:
    """The printable form a source path is stored and shown under; `path` itself when it needs
    no escaping."""
    if not needs_escape(path):
        return path
    return "".join(_escape(c) for c in path)


def real_source(stored: str) -> str:
    """The path a stored source was made from, as Python names files (`os.fsencode` of it gives
    the name's bytes). A source stored before escaping existed, whose backslashes do not form
    escapes, is returned as it is."""
    if "\\" not in stored or not _STORED.fullmatch(stored):
        return stored

    def unescape(match: re.Match[str]) -> str:
        byte, code, named = match.groups()
        if byte is not None:
            return chr(0xDC00 + int(byte, 16))
        if code is not None:
            return chr(int(code, 16))
        return _UNNAMED[named]

    return _ESCAPE.sub(unescape, stored)


def escape_reason(path: str) -> str:
    """Why `path` is stored escaped, for the one line that says so."""
    if any(unicodedata.category(c) == "Cs" for c in path):
        why = "holds bytes that are not UTF-8"
    elif any(unicodedata.category(c) in _ODD for c in path):
        why = "holds a control character or line break"
    else:
        why = "holds a backslash"
    return (
        f"name {why}; stored and shown escaped as here (ragkit.index.sources.real_source maps back)"
    )
