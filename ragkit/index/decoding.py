"""Bytes of a text file to text: the encoding found by BOM, by rule for Chinese and Western
text, else by charset-normalizer's guess; binary content is refused."""

from __future__ import annotations

import unicodedata


class Undecodable(ValueError):
    """Bytes that are not text in any plausible encoding; the message is the reason."""


_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
_NO_BOM_UNICODE = ["utf_16", "utf_16_be", "utf_16_le", "utf_32", "utf_32_be", "utf_32_le", "utf_7"]
_WESTERN_PUNCT = set("\u00a0¡¢£¤¥¦§¨©ª«¬\u00ad®¯°±²³´µ¶·¸¹º»¼½¾¿×÷‘’‚“”„†‡•…‰‹›€™–—ˆ˜")
_ALLOWED_CONTROLS = set("\t\n\r\f\v")


def decode(data: bytes) -> tuple[str, str]:
    """Decode bytes as UTF-8 (BOM aware), GB18030, Windows-1252, else charset-normalizer's guess.

    GB18030 and Windows-1252 are tried first by rule because statistical detection cannot tell
    them apart in short texts (a two-character Chinese file comes out as Big5 or Shift-JIS);
    the rules only accept a decoding that looks like real Chinese or Western text. Raises
    `Undecodable` for binary content: NUL bytes without a UTF-16/32 BOM, no plausible encoding,
    or a decoding full of control characters.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return _checked(data.decode(encoding)), encoding
            except UnicodeDecodeError as exc:
                raise Undecodable("binary or undecodable") from exc
    if not data.strip():
        raise Undecodable("empty")
    if b"\x00" in data:
        raise Undecodable("binary or undecodable")
    try:
        return _checked(data.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        pass
    for encoding, plausible in (("gb18030", _looks_chinese), ("cp1252", _looks_western)):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if plausible(text[:65536]):
            return _checked(text), encoding
    from charset_normalizer import from_bytes

    best = from_bytes(data, cp_exclusion=_NO_BOM_UNICODE).best()
    if best is None:
        raise Undecodable("binary or undecodable")
    return _checked(str(best)), best.encoding


def _looks_chinese(sample: str) -> bool:
    """Nearly every non-ASCII character is in GB2312, the common simplified-Chinese set."""
    wide = [c for c in sample if ord(c) > 127]
    if not wide:
        return False
    uncommon = 0
    for c in wide:
        try:
            c.encode("gb2312")
        except UnicodeEncodeError:
            uncommon += 1
    return uncommon * 20 <= len(wide)


def _looks_western(sample: str) -> bool:
    """Accented letters and typographic punctuation sprinkled through mostly ASCII text."""
    wide = [c for c in sample if ord(c) > 127]
    if len(wide) > len(sample) * 0.3:
        return False
    return all(c in _WESTERN_PUNCT or ("\u00c0" <= c <= "\u024f" and c.isalpha()) for c in wide)


def _checked(text: str) -> str:
    """Reject decodings that are mostly noise: real text has almost no control characters."""
    sample = text[:65536]
    bad = sum(
        1
        for c in sample
        if c == "\ufffd" or (unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROLS)
    )
    if bad > max(2, len(sample) // 100):
        raise Undecodable("binary or undecodable")
    return text
