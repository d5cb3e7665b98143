"""relbridge.kb: the knowledge base as an index built once and opened everywhere (no Beam).

Distant supervision (`relbridge.pipeline.label`), raw-text extraction
(``relbridge extract --kb``) and linking all ask a KB the same questions:
which word spans of a sentence are aliases of which entities, which relations
hold between two entities, what an entity's type and names are. A KB of
millions of entities cannot be parsed and held in memory by every worker, so
it is built once (`build_index`, ``relbridge kb build --kb DIR --output
INDEX``) into one read-only SQLite file that every process opens in
milliseconds and every thread shares (see `relbridge.kb.index` for why SQLite).

    from relbridge.kb import KbIndex, MatchProfile, open_kb

    index = open_kb("kb_dir_or_index", [MatchProfile("en")])  # builds into the cache if needed
    index = KbIndex.open("wikidata.kbindex")                   # or open a built index
    profile = MatchProfile("en", alias_langs=(), case_sensitive=True)  # (): every alias language
    for cand in index.find_mentions(words, profile):           # or ("en"); longest, then leftmost
        cand.start, cand.end, cand.entity_ids                  # word span [start, end), sorted ids
    index.relations("Q64", "Q183")                              # ('P17',)
    index.entity("Q64")                                         # Entity(id, type, aliases)
    index.link("berlin")                                        # ids whose alias normalises alike
    index.view(ids)                                             # the ids' entities and mutual facts

A `MatchProfile` fixes how aliases match: the text's language (its tokenizer
splits the aliases, its stop list drops function-word aliases), whose aliases
(``alias_langs``), and case. An index holds one alias table per profile it
was built with; `open_kb` builds what it is asked for.

Modules:
  * `matching`: the matching rules (`longest_leftmost`, function-word aliases,
    `resolve_mentions`, `label_relations`) and `AliasMatcher`, the in-memory
    spaCy PhraseMatcher that the index must agree with.
  * `index`: `build_index` (streaming, bounded memory) and `KbIndex`.
  * `source`: `open_kb`: KB directories or indexes, local or gs://, the cache.
  * `mentions`: `TextMentions`, the mention finder of raw-text extraction.
  * `wikidata`: a converter from a Wikidata JSON dump to the KB format.
"""

from relbridge.kb.build import build_index
from relbridge.kb.index import INDEX_FORMAT, KbIndex, MatchProfile, normalize_name
from relbridge.kb.matching import (
    AliasMatcher,
    Candidate,
    KbView,
    label_relations,
    longest_leftmost,
    resolve_mentions,
)
from relbridge.kb.mentions import TextMentions
from relbridge.kb.source import ensure_index, open_kb

__all__ = [
    "INDEX_FORMAT",
    "AliasMatcher",
    "Candidate",
    "KbIndex",
    "KbView",
    "MatchProfile",
    "TextMentions",
    "build_index",
    "ensure_index",
    "label_relations",
    "longest_leftmost",
    "normalize_name",
    "open_kb",
    "resolve_mentions",
]
