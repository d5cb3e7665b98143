"""KbIndex: a KB built once into one read-only SQLite file, opened by every worker.

Why SQLite (see also the package docstring): the index must stay out of each
worker's heap (a spaCy ``PhraseMatcher`` over 2M aliases took 3.6 GB per DoFn
instance), open in well under a second, be one file that copies to a worker's
disk from any Beam filesystem, and answer a sentence's lookups in a few
queries. SQLite is in the standard library, its B-trees are read from the
page cache that all processes share (an opened index costs a connection's
small page cache, not the KB's size), and ``immutable=1`` connections take no
locks. A sorted-array + numpy mmap design was the alternative: faster per
lookup, but mapped pages count in every process's RSS and every table
(entities, variable-length id lists, pair -> relations, names) would need its
own hand-written layout.

Tables:
  * ``meta(key, value)``: format, the KB files' fingerprint, counts, the
    alias languages, the relations and one entry per `MatchProfile`.
  * ``entities(num, id, type, aliases, line)``: aliases as JSON ``{lang: [..]}``;
    the covering index ``entities_narrow(num, id, type)`` answers the matcher's
    lookups from small pages (the aliases made a 1M-entity table's rows wide
    enough that each lookup read a page of its own: 3x slower labelling).
  * ``pairs(s, o, rels)``: entity numbers -> the relations from s to o.
  * ``names(name, num)``: `normalize_name` of every alias, for linking.
  * one alias table per `MatchProfile`: ``key -> (ents, more)``: the folded,
    `KEY_SEP`-joined words of an alias, the entity numbers it names (empty
    for a key that is only the start of longer aliases) and whether longer
    aliases start with it (so a lookup extends a span only while one could).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import unicodedata
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from relbridge.data_specs.kb_format import Entity
from relbridge.kb.matching import KEY_SEP, Candidate, KbView, fold_for, longest_leftmost

logger = logging.getLogger(__name__)

INDEX_FORMAT = "relbridge.kb-index.v3"
"""v3: alias keys are NFC with ``’`` as ``'`` (`fold_for`); v2: facts are read through the
KB's relation_map.json (v1 kept the source's property ids)."""
_CHUNK = 900  # host parameters per IN (...) query, under SQLite's oldest limit of 999


def normalize_name(text: str) -> str:
    """The form in which surface strings and aliases are compared for linking."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass(frozen=True)
class MatchProfile:
    """Which aliases match which text, and how: one alias table of an index.

    Attributes:
      lang: the text's language (its tokenizer splits the aliases; its stop list).
      alias_langs: whose aliases to match; ``()``: every language of the KB.
      case_sensitive: compare words as written (NFC, ``’`` as ``'``), else ``str.lower``.
      skip_function_words: leave out one-word aliases in ``lang``'s stop list.
    """

    lang: str
    alias_langs: tuple[str, ...] = ()
    case_sensitive: bool = True
    skip_function_words: bool = True

    @property
    def name(self) -> str:
        return ":".join(
            (
                self.lang,
                ",".join(sorted(self.alias_langs)) or "*",
                "cased" if self.case_sensitive else "folded",
                "skip-function-words" if self.skip_function_words else "all-words",
            )
        )

    @classmethod
    def parse(cls, spec: str) -> MatchProfile:
        """``LANG[:ALIAS_LANGS|*][:cased|folded][:skip-function-words|all-words]``.

        >>> MatchProfile.parse("en").name, MatchProfile.parse("de:*:folded").name
        ('en:en:cased:skip-function-words', 'de:*:folded:skip-function-words')
        """
        parts = spec.split(":")
        lang = parts[0].strip()
        if not lang or len(parts) > 4:
            raise ValueError(f"bad match profile {spec!r}: expected LANG[:ALIAS_LANGS][:cased|folded]")
        langs = parts[1] if len(parts) > 1 else lang
        alias_langs = () if langs == "*" else tuple(sorted(c for c in langs.split(",") if c))
        options = set(parts[2:])
        unknown = options - {"cased", "folded", "skip-function-words", "all-words"}
        if unknown:
            raise ValueError(f"bad match profile {spec!r}: unknown option(s) {sorted(unknown)}")
        return cls(lang, alias_langs, "folded" not in options, "all-words" not in options)

    def table(self) -> str:
        return "aliases_" + hashlib.sha1(self.name.encode()).hexdigest()[:12]


class KbIndex:
    """A built index, opened read-only; safe to share between threads (one connection each).

    Args:
      path: a local index file (see `relbridge.kb.source.open_kb` for KB
        directories and gs:// paths).
      cache_mb: SQLite's page cache per thread; the OS page cache does the rest.
    """

    def __init__(self, path: str, cache_mb: int = 16):
        self.path = path
        self._cache_kib = cache_mb * 1024
        self._local = threading.local()
        try:
            meta = dict(self._con().execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            raise ValueError(f"{path}: not a relbridge KB index ({e})") from None
        self.meta = {k: json.loads(v) for k, v in meta.items()}
        if self.meta.get("format") != INDEX_FORMAT:
            raise ValueError(
                f"{path}: KB index format {self.meta.get('format')!r}, this relbridge reads "
                f"{INDEX_FORMAT!r}; rebuild it with `relbridge kb build`"
            )
        self._matchers: dict[str, IndexMatcher] = {}

    @classmethod
    def open(cls, path: str) -> KbIndex:
        return cls(path)

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro&immutable=1"
            try:
                con = sqlite3.connect(uri, uri=True, check_same_thread=False)
            except sqlite3.OperationalError as e:
                raise FileNotFoundError(f"{self.path}: cannot open the KB index ({e})") from None
            con.execute(f"PRAGMA cache_size=-{self._cache_kib}")
            self._local.con = con
        return con

    def query(self, sql: str, args: Sequence = ()) -> list[tuple]:
        return self._con().execute(sql, tuple(args)).fetchall()

    def query_in(self, sql: str, values: Sequence) -> list[tuple]:
        """``sql`` with ``{}`` for an ``IN`` list, run over ``values`` in chunks."""
        values = list(values)
        rows = []
        for i in range(0, len(values), _CHUNK):
            part = values[i : i + _CHUNK]
            rows += self.query(sql.format(",".join("?" * len(part))), part)
        return rows

    @property
    def alias_langs(self) -> list[str]:
        return self.meta["alias_langs"]

    @property
    def relations_in_kb(self) -> list[str]:
        return self.meta["relations"]

    def __len__(self) -> int:
        return self.meta["entities"]

    def matcher(self, profile: MatchProfile) -> IndexMatcher:
        """The alias matcher of one profile (built into the index by `build_index`)."""
        if profile.name not in self._matchers:
            info = self.meta["profiles"].get(profile.name)
            if info is None:
                raise ValueError(
                    f"{self.path}: the KB index has no alias table for {profile.name} "
                    f"(it has: {', '.join(self.meta['profiles']) or 'none'}); build one with "
                    f"`relbridge kb build --profile {profile.name}`"
                )
            self._matchers[profile.name] = IndexMatcher(self, profile, info["table"])
        return self._matchers[profile.name]

    def find_mentions(
        self, words: Sequence[str], profile: MatchProfile | str
    ) -> list[Candidate]:
        """Alias matches in a sentence's words (longest, then leftmost; no overlaps).

        ``profile`` may be a language code alone: that language's text, the
        aliases of every language, case as written.
        """
        if isinstance(profile, str):
            profile = MatchProfile(profile)
        return self.matcher(profile)(words)

    def entity(self, entity_id: str) -> Entity | None:
        """An entity with its type and aliases, or ``None``."""
        rows = self.query("SELECT type, aliases FROM entities WHERE id = ?", (entity_id,))
        if not rows:
            return None
        aliases = {lang: tuple(names) for lang, names in json.loads(rows[0][1]).items()}
        return Entity(entity_id, rows[0][0], aliases)

    def relations(self, subject_id: str, object_id: str) -> tuple[str, ...]:
        """The KB relations from one entity to another, sorted (``()``: none)."""
        return self.view([subject_id, object_id]).relation_index.get((subject_id, object_id), ())

    def link(self, surface: str) -> tuple[str, ...]:
        """The ids of the entities with an alias equal to ``surface`` (`normalize_name`), sorted."""
        rows = self.query(
            "SELECT e.id FROM names AS n JOIN entities AS e ON e.num = n.num WHERE n.name = ?",
            (normalize_name(surface),),
        )
        return tuple(sorted(i for (i,) in rows))

    def view_of(self, candidates: Sequence[Candidate]) -> KbView:
        """`view` of the candidates' entities, from what the matcher already fetched."""
        if not all(len(c.nums) == len(c.types) == len(c.entity_ids) for c in candidates):
            return self.view(e for c in candidates for e in c.entity_ids)
        ids, types = {}, {}
        for c in candidates:
            ids.update(zip(c.nums, c.entity_ids))
            types.update(zip(c.entity_ids, c.types))
        pairs = {}
        if ids:
            for s, o, rels in self._pairs_among(list(ids)):
                pairs[(ids[s], ids[o])] = tuple(sorted(rels.split(KEY_SEP)))
        return KbView({eid: Entity(eid, t) for eid, t in types.items()}, pairs)

    def view(self, entity_ids: Iterable[str]) -> KbView:
        """The entities ``entity_ids`` (those in the KB) with the facts among them."""
        rows = self.query_in(
            "SELECT num, id, type FROM entities WHERE id IN ({})", sorted(set(entity_ids))
        )
        ids = {num: eid for num, eid, _ in rows}
        pairs = {}
        if ids:
            for s, o, rels in self._pairs_among(list(ids)):
                pairs[(ids[s], ids[o])] = tuple(sorted(rels.split(KEY_SEP)))
        return KbView({eid: Entity(eid, t) for _, eid, t in rows}, pairs)

    def _pairs_among(self, nums: list[int]) -> list[tuple[int, int, str]]:
        marks = ",".join("?" * len(nums))
        if len(nums) <= _CHUNK // 2:
            return self.query(
                f"SELECT s, o, rels FROM pairs WHERE s IN ({marks}) AND o IN ({marks})", nums + nums
            )
        wanted = set(nums)
        rows = self.query_in("SELECT s, o, rels FROM pairs WHERE s IN ({})", nums)
        return [r for r in rows if r[1] in wanted]

    def entities_of(self, nums: Iterable[int]) -> dict[int, tuple[str, str]]:
        """Entity numbers -> (id, type)."""
        rows = self.query_in(
            "SELECT num, id, type FROM entities INDEXED BY entities_narrow WHERE num IN ({})",
            sorted(set(nums)),
        )
        return {num: (eid, kind) for num, eid, kind in rows}


class IndexMatcher:
    """One profile's alias matcher over an open `KbIndex`: ``matcher(words) -> [Candidate]``.

    For each start word, the span grows one word at a time while the index
    says a longer alias could start there; all starts advance together, one
    query per span length. Every match is then filtered by `longest_leftmost`,
    as the PhraseMatcher reference does.
    """

    def __init__(self, index: KbIndex, profile: MatchProfile, table: str):
        self.index, self.profile, self._table = index, profile, table
        self._fold = fold_for(profile.case_sensitive)

    def __call__(self, words: Sequence[str]) -> list[Candidate]:
        words = [self._fold(w) for w in words]
        n, length = len(words), 1
        starts = list(range(n))
        found: dict[tuple[int, int], str] = {}
        while starts:
            keys = {i: KEY_SEP.join(words[i : i + length]) for i in starts}
            rows = {
                key: (ents, more)
                for key, ents, more in self.index.query_in(
                    f"SELECT key, ents, more FROM {self._table} WHERE key IN ({{}})",
                    sorted(set(keys.values())),
                )
            }
            following = []
            for i in starts:
                ents, more = rows.get(keys[i], (None, 0))
                if ents:
                    found[(i, i + length)] = ents
                if more and i + length < n:
                    following.append(i)
            starts, length = following, length + 1
        spans = longest_leftmost(found)
        nums = {s: [int(x) for x in found[s].split(",")] for s in spans}
        known = self.index.entities_of(x for v in nums.values() for x in v)
        out = []
        for s, e in spans:
            entities = sorted(known[x] + (x,) for x in nums[(s, e)])  # (id, type, num) by id
            ids = tuple(i for i, _, _ in entities)
            types = tuple(t for _, t, _ in entities)
            out.append(Candidate(s, e, ids, nums=tuple(n for _, _, n in entities), types=types))
        return out
