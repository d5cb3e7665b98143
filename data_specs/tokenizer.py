"""The corpus tokenizer: spaCy's rule-based word tokens for a language (no Beam, no model).

The pipeline's Tokenize stage, the KB alias index (`relbridge.kb`) and raw-text
extraction must split text into the same words, or a multi-word alias would
not match the sentence it names: they all call `make_tokenizer`. Each language
gets a blank spaCy pipeline (nothing to download): jieba segments Chinese and
SudachiPy Japanese; whitespace tokens are dropped. In languages that write a
name's case suffix after an apostrophe (Turkish ``Ankara'da``), the suffix
becomes its own token, so the name matches its KB alias.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

SEGMENTER_CONFIG = {
    "zh": {"nlp": {"tokenizer": {"segmenter": "jieba"}}},
}
"""spaCy settings per language where the blank default would be poor."""

APOSTROPHE_SUFFIX_LANGS = frozenset({"tr"})
"""Languages whose orthography puts a proper noun's inflection after an
apostrophe (``Obama'nın``, ``ABD'nin``, ``2019'da``); spaCy keeps such words whole."""

_APOSTROPHE_SUFFIX = re.compile(r"^(.*\w)(['’][^\W\d_]+)$")

MAX_BYTES = {"ja": 49_149}
"""The longest text (UTF-8 bytes) a language's segmenter takes in one call: SudachiPy
raises on longer input, so longer text is tokenized piece by piece (`_pieces`)."""

_BREAK = re.compile(r"[\s。！？、，]")


def check_language(lang: str, side: str = "", tokenizer: bool = True) -> None:
    """Raises ValueError unless spaCy has a tokenizer for ``lang``.

    Checked when the config is built, in the launcher, so a mistyped code stops
    the run before anything is written instead of failing on every worker.
    With ``tokenizer`` (what every caller but the sentence splitter needs) the
    tokenizer is also built once, so that a language whose spaCy tokenizer
    needs a library that is not installed (Thai, Korean, Vietnamese) stops here too.
    """
    import spacy.util

    try:
        spacy.util.get_lang_class(lang)
    except ImportError:
        raise ValueError(
            f"unknown {side + ' ' if side else ''}language code {lang!r}: spaCy has no "
            "tokenizer for it (use an ISO 639-1 code such as en, de, zh; 'xx' is spaCy's "
            "multi-language fallback)"
        ) from None
    if tokenizer:
        _check_blank(lang)


@cache
def _check_blank(lang: str) -> None:
    _blank(lang)


def _blank(lang: str):
    """``spacy.blank`` for ``lang``; ValueError where its tokenizer's library is missing."""
    import spacy

    try:
        return spacy.blank(lang, config=SEGMENTER_CONFIG.get(lang, {}))
    except ImportError as error:  # spaCy's answer when e.g. pythainlp, mecab-ko or pyvi is absent
        raise ValueError(
            f"language {lang!r}: spaCy's tokenizer for it needs a library that is not "
            f"installed ({error})"
        ) from None


def make_tokenizer(lang: str) -> Callable[[str], list[str]]:
    """Returns a function mapping text to its word tokens in ``lang``.

    Raises:
      ValueError: spaCy's tokenizer for ``lang`` needs a library that is not installed.
    """
    nlp = _blank(lang)
    split_suffix = lang in APOSTROPHE_SUFFIX_LANGS
    max_bytes = MAX_BYTES.get(lang)

    def tokenize(text: str) -> list[str]:
        pieces = _pieces(text, max_bytes) if max_bytes else [text]
        words = [t.text for piece in pieces for t in nlp.make_doc(piece) if not t.is_space]
        return (
            [w for word in words for w in split_apostrophe_suffix(word)] if split_suffix else words
        )

    return tokenize


def _pieces(text: str, max_bytes: int) -> list[str]:
    """``text`` cut into pieces of at most ``max_bytes`` UTF-8 bytes, in order.

    Each cut follows the last space or CJK punctuation of its piece when one
    lies in the piece's second half, else falls between two characters.
    """
    pieces = []
    while len(text.encode()) > max_bytes:
        cut = len(text.encode()[:max_bytes].decode(errors="ignore"))
        breaks = [m.end() for m in _BREAK.finditer(text, cut // 2, cut)]
        cut = breaks[-1] if breaks else cut
        pieces.append(text[:cut])
        text = text[cut:]
    return [*pieces, text]


def split_apostrophe_suffix(word: str) -> list[str]:
    """``Ankara'da`` -> ``["Ankara", "'da"]``; words without such a suffix stay whole.

    Only a lowercase suffix is split off, so names with an inner apostrophe
    (``O'Brien``, ``D'Alema``) are kept.
    """
    match = _APOSTROPHE_SUFFIX.match(word)
    if match is None or not match.group(2)[1:].islower():
        return [word]
    return [match.group(1), match.group(2)]
