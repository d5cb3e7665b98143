"""Split raw text into sentences, in any tokenizer language.

Raw-text extraction, `kg build` and sentence alignment all take documents, while
the extractor and the word aligner read one sentence at a time. One splitter
serves them all, so that a document gives the same sentences wherever it enters.

The rules, in order (a rule-based splitter: predictable, fast, no model to load):

1. A line break that ends a paragraph (a blank line) always ends a sentence; with
   ``line_breaks=True`` (the default) every line break does, as in text stored one
   sentence or paragraph per line.
2. CJK full stops, question and exclamation marks (``。！？``, and ``!?`` inside CJK
   text) end a sentence where they stand, with any closing quotes or brackets after
   them; no space is needed.
3. ``.``, ``!``, ``?``, ``…`` and the Arabic, Devanagari and other script-specific
   stops end a sentence when followed by white space and then something that can
   start one (not a lower-case letter); closing quotes and brackets stay with the
   sentence they close, also after a (French) non-breaking space.
4. A ``.`` does not end a sentence after a known abbreviation of the language
   (``Dr.``, ``z.B.``, ``etc.`` when a capital follows is still ambiguous, so only
   titles and other words that never end a sentence are listed), after a single
   letter (an initial, ``J. R. R. Tolkien``), or after a number of one or two digits
   in languages that write ordinals with a dot (German ``am 3. Oktober``).

Spans are character offsets ``[start, end)`` into the input, with surrounding white
space excluded; empty sentences are never returned.
"""

from __future__ import annotations

import re
from functools import cache

__all__ = ["split_sentences", "sentences"]

# Words that a "." after them never ends a sentence: titles and abbreviations that
# always precede something. Lower-cased, without their final dot.
_COMMON = {"mr", "mrs", "ms", "dr", "prof", "st", "mt", "e.g", "i.e", "vs", "cf", "no", "nr", "ca"}
_ABBREVIATIONS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "mr mrs ms dr prof sr jr st mt gen col lt sgt capt cmdr adm gov sen rep rev hon "
        "fig figs vol vols no nos pp ed eds inc ltd co corp bros dept univ est approx "
        "jan feb mar apr jun jul aug sep sept oct nov dec vs cf e.g i.e u.s u.k a.m p.m".split()
    ),
    "de": frozenset(
        "hr hrn fr frl dr prof dipl ing st nr bzw ca evtl ggf inkl usw vgl z.b d.h u.a "
        "u.a.m s.o s.u sog bspw jh jhd mio mrd abs abt bd str tel geb gest".split()
    ),
    "fr": frozenset(
        "m mm mme mmes mlle mlles dr pr prof st ste av apr j.-c env cf p.ex n° no vol "
        "chap fig éd etc".split()
    ),
    "es": frozenset(
        "sr sra sres srta dr dra prof d dña ud uds vd vds av avda núm no pág págs fig "
        "vol etc p.ej".split()
    ),
    "it": frozenset("sig sigg sig.ra dott dr prof ing avv on s sant no n pag fig vol ecc".split()),
    "pt": frozenset("sr sra srs dr dra prof av n nº pág fig vol etc".split()),
    "nl": frozenset("dhr mevr mw dr prof ir drs mr st nr blz bijv o.a d.w.z e.d enz".split()),
}
# Languages that write ordinal numbers with a trailing dot ("3. Oktober").
_ORDINAL_DOT = frozenset("de da nb no nn fi cs sk sl hr sr bs pl hu tr et lv lt is fo".split())

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CLOSERS = "\"'”’»›)\\]}」』】〕）〉》＂］"
# Also closing in German („so“) and English-internal quotes; only where no space follows
# could they open the next sentence, and a stop needs a space after its closers.
_SPACED_CLOSERS = _CLOSERS + "“‘"
# Stops that end a sentence without a following space (CJK), with closers after them.
_CJK_END = re.compile(rf"[。！？]+[{_CLOSERS}]*|(?<=[{_CJK}])[!?]+[{_CLOSERS}]*")
# Stops that need white space after them: . ! ? … and script-specific full stops
# (Arabic ؟ ۔, Devanagari । ॥, Armenian ։, Ethiopic ።, Myanmar ။, Khmer ។).
_SPACED_END = re.compile(rf"[.!?…؟۔।॥։።။។]+(?:[ \u00a0\u202f]?[{_SPACED_CLOSERS}])*(?=\s)")
_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_LINE = re.compile(r"\r\n|[\n\r\u2028\u2029\x85]")
_WORD_BEFORE = re.compile(r"(\S+)$")


@cache
def _abbreviations(lang: str) -> frozenset[str]:
    return _ABBREVIATIONS.get(lang, frozenset()) | _COMMON


def _is_false_stop(text: str, stop_start: int, lang: str) -> bool:
    """Whether the ``.`` at ``stop_start`` belongs to an abbreviation, initial or ordinal."""
    if text[stop_start] != "." or text[stop_start + 1 : stop_start + 2] in set(".!?…"):
        return False
    match = _WORD_BEFORE.search(text, 0, stop_start)
    if match is None:
        return False
    word = match.group(1).lstrip("\"'“‘«‹([{")
    if not word:
        return False
    if word.lower() in _abbreviations(lang):
        return True
    if len(word) == 1 and word.isalpha():  # an initial: "J. Smith"
        return True
    if "." in word and all(len(part) <= 2 for part in word.split(".")):  # "U.S", "z.B"
        return word.replace(".", "").isalpha()
    return lang in _ORDINAL_DOT and word.isdigit() and len(word) <= 2


def _starts_sentence(text: str, pos: int) -> bool:
    """Whether the first non-space character at or after ``pos`` can start a sentence."""
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text):
        return True
    char = text[pos]
    if char in _CLOSERS and char not in "\"'＂" or char in ",;:":  # "requin ! », explique-t-il": the sentence goes on
        return False
    return not (char.isalpha() and char.islower())


def _split_block(text: str, start: int, end: int, lang: str) -> list[int]:
    """Offsets (absolute) where a sentence ends inside ``text[start:end]``."""
    cuts = [m.end() for m in _CJK_END.finditer(text, start, end)]
    for match in _SPACED_END.finditer(text, start, end):
        if _is_false_stop(text, match.start(), lang):
            continue
        if _starts_sentence(text, match.end()):
            cuts.append(match.end())
    return sorted(set(cuts))


def _only_closers(piece: str) -> bool:
    return all(char in _SPACED_CLOSERS or char in ".,;:!?。，" for char in piece)


def split_sentences(text: str, lang: str, *, line_breaks: bool = True) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of the sentences of ``text``.

    Args:
        text: a document or a sentence, any language.
        lang: its ISO 639-1 code (chooses the abbreviation list and ordinal rule;
            any code works, unknown ones get the language-neutral rules).
        line_breaks: every line break ends a sentence (text stored a sentence or a
            paragraph per line); when False only blank lines do, for hard-wrapped text.

    Returns:
        The spans in order, trimmed of white space, never empty.
    """
    breaker = _LINE if line_breaks else _PARAGRAPH
    blocks, pos = [], 0
    for match in breaker.finditer(text):
        blocks.append((pos, match.start()))
        pos = match.end()
    blocks.append((pos, len(text)))
    spans: list[tuple[int, int]] = []
    for block_start, block_end in blocks:
        bounds = [block_start, *_split_block(text, block_start, block_end, lang), block_end]
        for left, right in zip(bounds, bounds[1:]):
            while left < right and text[left].isspace():
                left += 1
            while right > left and text[right - 1].isspace():
                right -= 1
            if left < right and spans and _only_closers(text[left:right]):
                spans[-1] = (spans[-1][0], right)  # a stray closing quote ends the last one
            elif left < right:
                spans.append((left, right))
    return spans


def sentences(text: str, lang: str, *, line_breaks: bool = True) -> list[str]:
    """The sentences of ``text`` as strings (see `split_sentences`)."""
    return [text[s:e] for s, e in split_sentences(text, lang, line_breaks=line_breaks)]
