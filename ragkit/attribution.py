"""Citations for answers a small model wrote without `[n]` markers: each answer sentence is
matched to the passage that contains most of its new words, so a reader still sees where a
claim comes from. Such citations are marked `inferred` and never replace the model's own."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragkit.text import is_cjk, sentence_spans, tokenize
from ragkit.types import Citation, Segment

# An answer that declines has nothing to attribute, whatever words it shares with a passage.
_DECLINES = re.compile(r"do not know|don't know|cannot (?:answer|infer)|不知道|无法(?:回答|推断)")
MIN_SHARE = 0.5


def _content_words(text: str) -> set[str]:
    """Words that can carry a fact: CJK words, numbers, and Latin words of 3+ letters."""
    return {t for t in tokenize(text) if len(t) >= 3 or t.isdigit() or is_cjk(t)}


def attribute(
    answer_text: str, segments: Sequence[Segment], question: str = ""
) -> tuple[Citation, ...]:
    """One inferred citation per supported sentence, in order of first use.

    Words the question already holds are left out, since every retrieved passage tends to
    share them; a sentence is attributed when one passage holds at least `MIN_SHARE` of its
    remaining words, to the passage that holds the most.
    """
    if not segments or _DECLINES.search(answer_text.lower()):
        return ()
    asked = _content_words(question)
    passage_words = [_content_words(s.text) for s in segments]
    found: dict[int, Citation] = {}
    for start, end in sentence_spans(answer_text):
        words = _content_words(answer_text[start:end])
        words = (words - asked) or words
        if not words:
            continue
        shares = [len(words & pw) / len(words) for pw in passage_words]
        best = max(range(len(segments)), key=lambda i: (shares[i], -i))
        seg = segments[best]
        if shares[best] >= MIN_SHARE and seg.number not in found:
            found[seg.number] = Citation(
                seg.number, seg.chunk_id, seg.doc_id, seg.source, inferred=True
            )
    return tuple(found.values())
