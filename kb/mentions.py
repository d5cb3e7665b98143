"""TextMentions: KB mentions in raw text, for ``relbridge extract --kb`` (no Beam)."""

from __future__ import annotations

from collections.abc import Sequence

from relbridge.data_specs.kb_format import KnowledgeBase
from relbridge.kb.index import KbIndex, MatchProfile
from relbridge.kb.matching import AliasMatcher


class TextMentions:
    """KB mentions in raw text: ``finder(text) -> (words, [(start, end, type)])``.

    What ``relbridge extract --kb`` uses to find entities the KB names, so
    that the records' arguments link to KB ids; the words are ``lang``'s
    tokens (substrings of the text). An alias of several entities of one
    type keeps that type, else ``""``; which entity it names is left to the
    linker (`relbridge.models.triples`).

    Args:
      kb: a KB directory or index path (opened with `relbridge.kb.open_kb`,
        built into the cache on first use), an open `KbIndex`, or a loaded
        `KnowledgeBase` (matched in memory by `AliasMatcher`: small KBs).
      lang: the text's language (tokenizer, function words).
      alias_langs: whose aliases to match (default: every language of the KB,
        since names are often written alike across languages).
      case_sensitive: match aliases on exact case.

    Attributes:
      found: mentions found so far, over all calls.

    Raises:
      ValueError: an ``alias_langs`` language that no KB alias has.
    """

    def __init__(
        self,
        kb: KnowledgeBase | KbIndex | str,
        lang: str,
        alias_langs: Sequence[str] | None = None,
        case_sensitive: bool = True,
    ):
        from relbridge.data_specs.tokenizer import make_tokenizer

        profile = MatchProfile(lang, tuple(sorted(set(alias_langs or ()))), case_sensitive)
        if isinstance(kb, str):
            from relbridge.kb.source import open_kb

            kb = open_kb(kb, [profile])
        in_kb = (
            sorted({code for e in kb.entities.values() for code in e.aliases})
            if isinstance(kb, KnowledgeBase)
            else kb.alias_langs
        )
        unknown = sorted(set(alias_langs or ()) - set(in_kb))
        if unknown:
            raise ValueError(
                f"the KB has no aliases in {', '.join(unknown)} (it has: {', '.join(in_kb)})"
            )
        self._kb = kb
        self._tokenize = make_tokenizer(lang)
        if isinstance(kb, KnowledgeBase):
            self._match = AliasMatcher(kb, lang, case_sensitive, alias_langs=alias_langs or in_kb)
            self._entities = kb.entities
        else:
            self._match = kb.matcher(profile)
            self._entities = None
        self.found = 0

    def __call__(self, text: str) -> tuple[list[str], list[tuple[int, int, str]]]:
        words = self._tokenize(text)
        candidates = self._match(words)
        entities = self._entities
        if entities is None:
            entities = self._kb.view_of(candidates).entities
        found = []
        for cand in candidates:
            types = {entities[e].type for e in cand.entity_ids}
            found.append((cand.start, cand.end, types.pop() if len(types) == 1 else ""))
        self.found += len(found)
        return words, found
