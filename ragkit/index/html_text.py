"""Visible text of an HTML page, read in one pass over its tags without building a tree.

A tree costs nothing for ordinary pages but is a trap for hostile ones: editing a deeply
nested tree (inserting line breaks around block elements) takes time that grows with the
square of the depth, and walking it recursively overflows the stack. Reading the tag stream
instead costs time in proportion to the file's size whatever its shape.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

DROP = frozenset({"script", "style", "noscript", "template", "head"})
BLOCKS = frozenset(
    {
        "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header",
        "footer", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "hr", "td", "th",
        "dd", "dt", "figcaption", "main", "nav", "aside",
    }
)  # fmt: skip
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


class _Extractor(HTMLParser):
    """Collects text outside dropped elements, a line break around each block element, and the
    first <title>. Open dropped elements are counted by name, so no tag costs more than a
    constant amount of work however deep the page nests."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] | None = None  # set while the first <title> is open
        self.title = ""
        self.title_seen = False
        self.dropped: list[str] = []  # open elements whose content is not visible text
        self.open_count = dict.fromkeys(DROP, 0)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body" and self.open_count["head"]:
            self._close("head")  # an unclosed <head> ends where the body starts
        if tag == "title" and not self.title_seen:
            self.title_seen = True
            self.title_parts = []
        if tag in DROP:
            self.dropped.append(tag)
            self.open_count[tag] += 1
        elif tag in BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self.title_parts is not None:
            self.title = _join(self.title_parts)
            self.title_parts = None
        if tag in DROP:
            if self.open_count[tag]:
                self._close(tag)
        elif tag in BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.title_parts is not None:
            self.title_parts.append(data)
        if not self.dropped:
            self.parts.append(data)

    def _close(self, tag: str) -> None:
        """Close the innermost open `tag` and every dropped element opened inside it."""
        while self.dropped:
            top = self.dropped.pop()
            self.open_count[top] -= 1
            if top == tag:
                return


def _join(parts: list[str]) -> str:
    return " ".join(s.strip() for s in parts if s.strip())


def html_text(markup: str) -> tuple[str, str]:
    """(visible text with block elements on their own lines, title or "")."""
    parser = _Extractor()
    parser.feed(markup)
    parser.close()
    title = parser.title or _join(parser.title_parts or [])  # the latter: <title> never closed
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(parser.parts).splitlines())
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip(), title
