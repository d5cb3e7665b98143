"""Languages: the codes that file names carry, and each language's function words.

Evaluation and training files name their language (``RELX_de.txt``,
``es-europarl.test.conll02``, ``en.conll``), so commands read it from the name
unless told otherwise. Only ISO 639-1 codes count: a looser "two or three
letters" rule would read KBP37's ``dev.txt`` as a language called ``dev``.

`lexicon` gives spaCy's stop list and number test for a language; projection
trims function words off names with it, and distant supervision skips aliases
that are function words.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from functools import cache

logger = logging.getLogger(__name__)

ISO_639_1 = frozenset(
    """
    aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu
    cv cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi
    ho hr ht hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks
    ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl
    nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl
    sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve
    vi vo wa wo xh yi yo za zh zu
    """.split()  # noqa: SIM905 (183 codes read better as a table)
)
"""The two-letter ISO 639-1 language codes."""


def language_in_name(path: str) -> str | None:
    """The ISO 639-1 code in a file's name, or ``None``.

    The name before its first dot is split on ``_`` and ``-``; the last part
    that is a lowercase ISO 639-1 code wins.

    >>> language_in_name("relx/RELX_de.txt"), language_in_name("it-europarl.test.conll02")
    ('de', 'it')
    >>> language_in_name("en.conll"), language_in_name("kbp37/dev.txt")
    ('en', None)
    """
    stem = os.path.basename(path).split(".", 1)[0]
    codes = [part for part in re.split(r"[_-]", stem) if part in ISO_639_1]
    return codes[-1] if codes else None


def has_digit(word: str) -> bool:
    return any(c.isdigit() for c in word)


@cache
def lexicon(lang: str | None) -> tuple[frozenset[str], Callable[[str], bool]]:
    """spaCy's stop list (case-folded) and number test for a language.

    spaCy ships both for most languages without any model download. An
    unknown or missing code gives an empty list, and a language without a
    number test gets "has a digit".
    """
    if not lang:
        return frozenset(), has_digit
    try:
        from spacy.attrs import LIKE_NUM
        from spacy.util import get_lang_class

        defaults = get_lang_class(lang).Defaults
    except ImportError as error:  # spaCy's answer to a code it has no language for
        logger.warning(
            "no function-word list for language %r (%s): rules using it off", lang, error
        )
        return frozenset(), has_digit
    like_num = defaults.lex_attr_getters.get(LIKE_NUM) or has_digit
    return frozenset(w.casefold() for w in defaults.stop_words), like_num


def is_function_word(words: Sequence[str], stop_words: frozenset[str]) -> bool:
    """One word of the stop list (``his``, ``er``, ``May``), unless written in capitals (``US``).

    Such a word names no entity to an alias matcher or a knowledge graph: KB aliases
    like it match nearly every sentence, and a graph node for it would join every
    sentence's *his*.
    """
    if len(words) != 1:
        return False
    word = words[0]
    return word.casefold() in stop_words and not (len(word) > 1 and word.isupper())
