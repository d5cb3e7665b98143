"""The KBP37 / RELX entity-marked format: parsing and word segmentation.

A record is a block of ``id<TAB>"sentence with <e1> .. </e1> and <e2> .. </e2>"``
followed by a label line such as ``per:employee_of(e1,e2)`` or ``no_relation``;
blocks are separated by blank lines (their count varies between files, so parse
by blocks, not by line counts). Markers are sometimes glued to punctuation or
letters in the translations (``L'<e1> Sacramento``, ``</e1>s``), so they are
stripped with a regex and the entities kept as character spans ``[start, end)``.

The label's direction says which marked entity is the subject: ``(e1,e2)``
means e1 is the subject. `RelxRecord.subject_object()` resolves that, so
consumers compare ``(relation, subject, object)`` and never raw label strings,
whose direction flips when a translation reorders the entities.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from relbridge.data_specs.formats import InputError, open_lines
from relbridge.data_specs.relations import NA

NO_RELATION = "no_relation"
_MARKER = re.compile(r"\s*</?e[12]>\s*")
_LABEL = re.compile(r"^(?P<rel>[a-z]+:[\w/]+)\((?P<a>e[12]),(?P<b>(?!(?P=a))e[12])\)$")
"""``r(e1,e2)`` or ``r(e2,e1)``: a relation between the two entities, never one with itself."""


def _in_word_class() -> str:
    """``\\w`` plus what Python's ``\\w`` lacks inside words, as a regex class.

    Combining marks (Unicode category M: Devanagari vowel signs and virama, Thai
    vowels, Arabic harakat, the accents of NFD text) and the zero-width
    (non-)joiner of Persian and Indic words; without them ``हिन्दी`` or an NFD
    ``José`` fell apart into letters and marks. Marks live in planes 0, 1 and 14.
    """
    marks = [
        chr(cp)
        for cp in (*range(0x20000), *range(0xE0000, 0xE1000))
        if unicodedata.category(chr(cp))[0] == "M" or cp in (0x200C, 0x200D)
    ]
    return "[\\w" + "".join(re.escape(c) for c in marks) + "]"


_IN_WORD = _in_word_class()
_WORD = re.compile(rf"{_IN_WORD}+(?:[-'’.]{_IN_WORD}+)*|[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class RelxRecord:
    """One marked sentence: clean text, the two entities' character spans, label.

    ``e1``/``e2`` are character spans ``[start, end)`` into ``text``; ``e1`` is the
    entity marked ``<e1>`` (in RELX, the one that comes first in the sentence).
    """

    id: str
    text: str
    e1: tuple[int, int]
    e2: tuple[int, int]
    label: str
    source_file: str = ""
    line: int = 0

    @property
    def relation(self) -> str:
        """The undirected relation name, ``NA`` for ``no_relation``."""
        match = _LABEL.match(self.label)
        return match.group("rel") if match else NA

    def subject_object(self) -> tuple[str, tuple[int, int], tuple[int, int]]:
        """Returns ``(relation, subject span, object span)``; for NA, (NA, e1, e2)."""
        match = _LABEL.match(self.label)
        if not match:
            return NA, self.e1, self.e2
        if match.group("a") == "e1":
            return match.group("rel"), self.e1, self.e2
        return match.group("rel"), self.e2, self.e1

    def entity_text(self, which: str) -> str:
        start, end = self.e1 if which == "e1" else self.e2
        return self.text[start:end]


def strip_markers(marked: str) -> tuple[str, dict[str, tuple[int, int]]]:
    """Removes ``<e1>``/``</e1>``/``<e2>``/``</e2>`` and returns the clean text and spans.

    A marker with whitespace on both sides becomes one space. With whitespace on
    one side only it becomes one space too, except before closing punctuation or
    after an apostrophe or opening bracket (``L'<e1> Sacramento``,
    ``Heatwave </e1>,``); a marker glued on both sides becomes nothing.
    """
    out: list[str] = []
    spans: dict[str, list[int]] = {"e1": [-1, -1], "e2": [-1, -1]}
    pos = 0
    for match in _MARKER.finditer(marked):
        out.append(marked[pos : match.start()])
        pos = match.end()
        so_far = "".join(out)
        after = marked[match.end()] if match.end() < len(marked) else ""
        raw = match.group(0)
        spaced = raw != raw.strip()
        both_spaced = raw[0].isspace() and raw[-1].isspace()
        glue = (
            (not so_far)
            or (not after)
            or (not both_spaced and (after in _CLOSING or so_far[-1] in _OPENING))
        )
        tag = match.group(0).strip()
        name = tag.strip("</>")
        if tag.startswith("</"):
            spans[name][1] = len(so_far)
        if spaced and not glue and not so_far.endswith(" "):
            out.append(" ")
        if not tag.startswith("</"):
            spans[name][0] = len("".join(out))
    out.append(marked[pos:])
    return "".join(out), {k: (v[0], v[1]) for k, v in spans.items()}


_CLOSING = set(",.;:!?)]}»\"'")
_OPENING = set("'’([{«\"")


def parse_relx(lines: Iterable[str], source_file: str) -> Iterator[RelxRecord]:
    """Parses a KBP37/RELX file into records.

    Raises:
      InputError: a block without a label, a missing marker or an empty entity
        is reported with its file and line.
    """
    block: list[tuple[int, str]] = []
    for number, raw in enumerate(list(lines) + [""], start=1):
        text = raw.rstrip("\r\n")
        if text.strip():
            block.append((number, text))
            continue
        if not block:
            continue
        if len(block) != 2:
            raise InputError(
                source_file,
                block[0][0],
                f"expected a sentence line and a label line, got {len(block)} lines",
            )
        (line, sentence_line), (_, label) = block
        block = []
        record_id, sep, sentence = sentence_line.partition("\t")
        if not sep:
            raise InputError(source_file, line, "expected id<TAB>sentence")
        sentence = sentence.strip()
        if len(sentence) >= 2 and sentence[0] == sentence[-1] == '"':
            sentence = sentence[1:-1]
        if any(sentence.count(m) != 1 for m in ("<e1>", "</e1>", "<e2>", "</e2>")):
            raise InputError(
                source_file, line, "each of <e1> </e1> <e2> </e2> must occur exactly once"
            )
        clean, spans = strip_markers(sentence.strip())
        label = label.strip()
        if label != NO_RELATION and not _LABEL.match(label):
            raise InputError(source_file, line + 1, f"unknown label format {label!r}")
        yield RelxRecord(
            record_id.strip(), clean, spans["e1"], spans["e2"], label, source_file, line
        )


def read_relx(path: str) -> list[RelxRecord]:
    """Reads a whole KBP37/RELX file from the local disk."""
    with open_lines(path) as f:
        return list(parse_relx(f, path))


def words_with_spans(
    text: str, char_spans: Iterable[tuple[int, int]] = ()
) -> tuple[list[str], list[tuple[int, int]]]:
    """Splits text into words and maps character spans onto word spans.

    Words are runs of word characters (keeping inner hyphens, apostrophes and
    dots, as in ``U.K.`` or ``l'ABA``) or single punctuation marks; every span
    boundary is also forced to be a word boundary, so an entity glued to a
    neighbour (``Australiens`` with anchor ``Australien``) still gets its own word.

    Returns:
      ``(words, word_spans)`` with one ``[start, end)`` word span per char span;
      a char span that covers no word maps to ``(-1, -1)``.
    """
    char_spans = list(char_spans)
    cuts = sorted({b for span in char_spans for b in span if 0 <= b <= len(text)})
    pieces: list[tuple[int, int]] = []
    for match in _WORD.finditer(text):
        start = match.start()
        for cut in cuts:
            if match.start() < cut < match.end():
                pieces.append((start, cut))
                start = cut
        pieces.append((start, match.end()))
    words = [text[s:e] for s, e in pieces]
    word_spans = []
    for cs, ce in char_spans:
        inside = [i for i, (s, e) in enumerate(pieces) if s >= cs and e <= ce]
        word_spans.append((inside[0], inside[-1] + 1) if inside else (-1, -1))
    return words, word_spans


_ELIDED = re.compile(
    r"^((?:[cdjlmnst]|\w*qu|dell|dall|nell|sull|coll|all|quell|un)['’])(?=[^\W\d_])", re.I
)
"""An elided article or pronoun glued to the next word: French ``l'``, ``d'``,
``qu'``, ``jusqu'``, Italian ``dell'``, ``all'``, ``un'``, Catalan ``l'``."""


def raw_words(text: str) -> list[str]:
    """The words of untagged text: `words_with_spans`' words, split as a marked span splits them.

    In marked text a span boundary is a word boundary, so a name keeps no
    elided article (``l'`` of ``l'Université``) and no apostrophe suffix
    (``'s`` of ``Obama's``, Turkish ``'da`` of ``Ankara'da``). Untagged text
    has no boundaries to force, so those are split off here, or a name glued
    to them could never be found exactly. A suffix is split off a capitalised
    word or a number only, and only when it is lowercase (``O'Brien`` stays).

    >>> raw_words("Il a rejoint l'Université de Montréal, dell'ONU et Obama's team.")[3:7]
    ["l'", 'Université', 'de', 'Montréal']
    >>> raw_words("Il a rejoint l'Université de Montréal, dell'ONU et Obama's team.")[8:]
    ["dell'", 'ONU', 'et', 'Obama', "'s", 'team', '.']
    """
    from relbridge.data_specs.tokenizer import split_apostrophe_suffix

    words = []
    for word in words_with_spans(text)[0]:
        elided = _ELIDED.match(word)
        if elided:
            words.append(elided.group(1))
            word = word[elided.end() :]
        named = word[:1].isupper() or word[:1].isdigit()
        words += split_apostrophe_suffix(word) if named else [word]
    return words
