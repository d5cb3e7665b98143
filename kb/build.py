"""Building a KB index: the KB directory streamed into one SQLite file (see `relbridge.kb.index`).

The KB is read line by line and checked with the errors of `load_kb`; SQLite
sorts and groups on disk, so memory stays bounded whatever the KB's size. A
``relation_map.json`` beside the KB turns its facts into the mapped relations
(`relbridge.data_specs.relation_map`) before they are grouped into pairs.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from functools import lru_cache

from relbridge.data_specs.formats import InputError, open_lines
from relbridge.data_specs.kb_format import (
    EntityLine,
    check_duplicate_entity,
    iter_entity_lines,
    iter_triple_lines,
    kb_sources,
)
from relbridge.data_specs.languages import is_function_word, lexicon
from relbridge.data_specs.relation_map import iter_levels, map_triple, read_relation_map
from relbridge.kb.index import INDEX_FORMAT, MatchProfile, normalize_name
from relbridge.kb.matching import KEY_SEP, alias_key

logger = logging.getLogger(__name__)


def build_index(
    kb_dir: str,
    output: str,
    profiles: Sequence[MatchProfile],
    fingerprint: str = "",
    open_text: Callable[[str], AbstractContextManager[Iterable[str]]] | None = None,
    listdir: Callable[[str], list[str]] | None = None,
    cache_mb: int = 256,
) -> dict:
    """Builds the index of the KB directory ``kb_dir`` into the local file ``output``.

    The KB is streamed and checked line by line (the errors of `load_kb`,
    naming file and line); SQLite sorts and groups on disk, so memory stays
    bounded by ``cache_mb`` whatever the KB's size. The file appears under
    its name only when complete.

    Returns:
      The index's metadata (also in its ``meta`` table).
    """
    start = time.perf_counter()
    open_text = open_text or open_lines
    files, inventory = kb_sources(kb_dir, open_text, listdir)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = f"{output}.tmp-{os.getpid()}"
    if os.path.exists(tmp):
        os.remove(tmp)
    con = sqlite3.connect(tmp)
    try:
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=FILE"):
            con.execute(f"PRAGMA {pragma}")
        con.execute(f"PRAGMA cache_size=-{cache_mb * 1024}")
        con.executescript(
            """
            CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE entities(num INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
                                  type TEXT NOT NULL, aliases TEXT NOT NULL, line INTEGER NOT NULL);
            """
        )
        with open_text(files.entities) as f:
            n_entities = _load_entities(con, iter_entity_lines(f, files.entities), files.entities)
        with open_text(files.triples) as f:
            _stage_triples(con, iter_triple_lines(f, files.triples, inventory), files.triples)
        if files.relation_map:
            _map_staged(con, files, open_text)
        relations, n_triples = _group_pairs(con)
        alias_langs = sorted(
            {lang for (a,) in con.execute("SELECT aliases FROM entities") for lang in json.loads(a)}
        )
        _load_names(con)
        # (id, type) of many entities per sentence without reading their aliases' pages.
        con.execute("CREATE INDEX entities_narrow ON entities(num, id, type)")
        built = {p.name: _load_profile(con, p, alias_langs) for p in profiles}
        meta = {
            "format": INDEX_FORMAT,
            "fingerprint": fingerprint,
            "kb": kb_dir,
            "files": list(files.all),
            "entities": n_entities,
            "triples": n_triples,
            "relations": relations,
            "alias_langs": alias_langs,
            "profiles": built,
        }
        con.executemany(
            "INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()]
        )
        con.commit()
        con.execute("ANALYZE")
    except BaseException:
        con.close()
        os.remove(tmp)  # a failed build leaves nothing behind
        raise
    con.close()
    os.replace(tmp, output)
    logger.info(
        "KB index %s: %d entities, %d triples, profiles %s, %.1f s, %.1f MB",
        output,
        n_entities,
        n_triples,
        ", ".join(built),
        time.perf_counter() - start,
        os.path.getsize(output) / 1e6,
    )
    return meta


def _aliases_json(entry: EntityLine) -> str:
    table: dict[str, list[str]] = {}
    for lang, alias in entry.aliases:
        names = table.setdefault(lang, [])
        if alias not in names:
            names.append(alias)
    return json.dumps(table, ensure_ascii=False)


def _load_entities(con: sqlite3.Connection, entries: Iterable[EntityLine], source: str) -> int:
    """Inserts entities; a repeated id merges (TSV) or is checked as a duplicate (JSONL)."""
    is_json = ".jsonl" in os.path.basename(source)
    count = 0
    for entry in entries:
        row = con.execute(
            "SELECT num, type, aliases, line FROM entities WHERE id = ?", (entry.id,)
        ).fetchone()
        if row is None:
            con.execute(
                "INSERT INTO entities(id, type, aliases, line) VALUES (?, ?, ?, ?)",
                (entry.id, entry.type, _aliases_json(entry), entry.line),
            )
            count += 1
            continue
        num, old_type, old_aliases, old_line = row
        pairs = tuple((lang, a) for lang, names in json.loads(old_aliases).items() for a in names)
        if is_json:
            earlier = EntityLine(old_line, entry.id, old_type, pairs)
            check_duplicate_entity(earlier, entry, source)
            continue
        if entry.type and old_type and old_type != entry.type:
            raise InputError(
                source,
                entry.line,
                f"entity {entry.id} has type {entry.type!r}, earlier {old_type!r}",
            )
        merged = EntityLine(old_line, entry.id, old_type or entry.type, pairs + entry.aliases)
        con.execute(
            "UPDATE entities SET type = ?, aliases = ? WHERE num = ?",
            (merged.type, _aliases_json(merged), num),
        )
    return count


def _stage_triples(
    con: sqlite3.Connection, triples: Iterable[tuple[int, tuple[str, str, str]]], source: str
) -> None:
    """Stages the triples in a temporary table and checks that they name known entities."""
    con.execute("CREATE TEMP TABLE staged(s TEXT, r TEXT, o TEXT, line INTEGER)")
    batch: list[tuple[str, str, str, int]] = []
    for line, (s, r, o) in triples:
        batch.append((s, r, o, line))
        if len(batch) >= 10_000:
            con.executemany("INSERT INTO staged VALUES (?, ?, ?, ?)", batch)
            batch.clear()
    con.executemany("INSERT INTO staged VALUES (?, ?, ?, ?)", batch)
    unknown = con.execute(
        """SELECT line, s, r, o, s NOT IN (SELECT id FROM entities) FROM staged
           WHERE s NOT IN (SELECT id FROM entities) OR o NOT IN (SELECT id FROM entities)
           ORDER BY line LIMIT 1"""
    ).fetchone()
    if unknown:
        line, s, r, o, subject_unknown = unknown
        arg = s if subject_unknown else o
        raise InputError(source, line, f"triple ({s}, {r}, {o}) names unknown entity {arg}")


def _map_staged(con: sqlite3.Connection, files, open_text) -> None:
    """Replaces the staged facts by their mapped relations (`relbridge.data_specs.relation_map`).

    Streams: the levels go to a temporary table and the facts are read back
    joined with their arguments' types and levels, so memory stays bounded.
    """
    rules = read_relation_map(files.relation_map, open_text)
    con.execute("CREATE TEMP TABLE levels(id TEXT PRIMARY KEY, level TEXT NOT NULL)")
    if files.levels:
        with open_text(files.levels) as f:
            con.executemany("INSERT OR REPLACE INTO levels VALUES (?, ?)", iter_levels(f, files.levels))
    con.execute("CREATE TEMP TABLE mapped(s TEXT, r TEXT, o TEXT, line INTEGER)")
    rows = con.execute(
        """SELECT t.s, t.r, t.o, t.line, es.type, eo.type, l.level FROM staged AS t
           JOIN entities AS es ON es.id = t.s JOIN entities AS eo ON eo.id = t.o
           LEFT JOIN levels AS l ON l.id = t.o"""
    )
    n_facts = 0
    while chunk := rows.fetchmany(10_000):
        n_facts += len(chunk)
        mapped = (
            (*m, line)
            for s, r, o, line, s_type, o_type, level in chunk
            if (m := map_triple(rules, (s, r, o), s_type, o_type, level))
        )
        con.executemany("INSERT INTO mapped VALUES (?, ?, ?, ?)", list(mapped))
    con.executescript(
        """DELETE FROM staged; INSERT INTO staged SELECT * FROM mapped;
           DROP TABLE mapped; DROP TABLE levels;"""
    )
    (n_mapped,) = con.execute("SELECT count(*) FROM staged").fetchone()
    logger.info("%s: %d of %d facts map to relations", files.relation_map, n_mapped, n_facts)


def _group_pairs(con: sqlite3.Connection) -> tuple[list[str], int]:
    """Groups the staged triples into ``pairs``: the relations and the number of distinct triples."""
    con.executescript(
        """
        CREATE TABLE pairs(s INTEGER, o INTEGER, rels TEXT NOT NULL, PRIMARY KEY (s, o))
            WITHOUT ROWID;
        INSERT INTO pairs
            SELECT es.num, eo.num, group_concat(t.r, char(31))
            FROM (SELECT DISTINCT s, r, o FROM staged) AS t
            JOIN entities AS es ON es.id = t.s JOIN entities AS eo ON eo.id = t.o
            GROUP BY es.num, eo.num;
        """
    )
    relations = [r for (r,) in con.execute("SELECT DISTINCT r FROM staged ORDER BY r")]
    (n_triples,) = con.execute("SELECT count(*) FROM (SELECT DISTINCT s, r, o FROM staged)").fetchone()
    con.execute("DROP TABLE staged")
    return relations, n_triples


def _load_names(con: sqlite3.Connection) -> None:
    """Every alias's `normalize_name` form -> its entities, for linking."""
    con.execute("CREATE TEMP TABLE staged_names(name TEXT, num INTEGER)")
    batch = []
    for num, aliases in con.execute("SELECT num, aliases FROM entities").fetchall():
        for names in json.loads(aliases).values():
            batch.extend((normalize_name(a), num) for a in names)
        if len(batch) >= 10_000:
            con.executemany("INSERT INTO staged_names VALUES (?, ?)", batch)
            batch.clear()
    con.executemany("INSERT INTO staged_names VALUES (?, ?)", batch)
    con.executescript(
        """
        CREATE TABLE names(name TEXT NOT NULL, num INTEGER NOT NULL, PRIMARY KEY (name, num))
            WITHOUT ROWID;
        INSERT OR IGNORE INTO names SELECT name, num FROM staged_names ORDER BY name, num;
        DROP TABLE staged_names;
        """
    )


class _AliasTokenizer:
    """`make_tokenizer` for millions of aliases: memoised by word, and renewed every ``renew`` calls.

    spaCy's tokenizer splits text on spaces first and tokenizes each piece on
    its own, unless a tokenizer exception itself contains a space (Spanish
    ``EE. UU.``). Where the language has no such exception, an alias's words
    are the concatenation of its space-separated pieces' words, and the
    pieces (names share most of theirs) are tokenized once each: the Wikidata
    slice's 740k aliases took 7 minutes per profile one alias at a time, most
    of it in spaCy's affix rules. Elsewhere (such exceptions, jieba, Sudachi,
    other whitespace) whole aliases are memoised. spaCy's vocabulary keeps a
    lexeme for every new word it has seen; over a Wikidata-sized KB that is
    gigabytes, so the tokenizer (and with it the vocabulary) is rebuilt now
    and then. The words it returns do not depend on what it has seen before.
    """

    def __init__(self, lang: str, renew: int = 500_000):
        self._lang, self._renew, self._calls = lang, renew, 0
        self._tokenize = None
        self._by_piece = _splits_on_spaces(lang)

    def __call__(self, alias: str) -> list[str]:
        if self._calls % self._renew == 0:
            from relbridge.data_specs.tokenizer import make_tokenizer

            self._tokenize = lru_cache(maxsize=1 << 18)(make_tokenizer(self._lang))
        self._calls += 1
        if self._by_piece and " " in alias and not any(c.isspace() and c != " " for c in alias):
            return [w for piece in alias.split(" ") if piece for w in self._tokenize(piece)]
        return self._tokenize(alias)


def _splits_on_spaces(lang: str) -> bool:
    """Whether ``lang``'s tokenizer words of a text are its space-separated pieces' words."""
    import spacy

    from relbridge.data_specs.tokenizer import SEGMENTER_CONFIG

    if lang in SEGMENTER_CONFIG or lang in ("ja", "ko", "th", "vi"):
        return False  # a segmenter sees the whole text
    rules = spacy.blank(lang).tokenizer.rules or {}
    return not any(" " in key and key.strip() for key in rules)


def _load_profile(con: sqlite3.Connection, profile: MatchProfile, kb_langs: list[str]) -> dict:
    """Tokenises the profile's aliases into its alias table; returns the table's metadata."""
    start = time.perf_counter()
    tokenize = _AliasTokenizer(profile.lang)
    stop_words = lexicon(profile.lang)[0] if profile.skip_function_words else frozenset()
    langs = set(profile.alias_langs or kb_langs)
    con.execute("CREATE TEMP TABLE staged_keys(key TEXT, num INTEGER)")
    batch: list[tuple[str, int | None]] = []
    longest, skipped, aliases = 0, 0, 0
    cursor = con.execute("SELECT num, aliases FROM entities")
    while rows := cursor.fetchmany(5_000):
        for num, text in rows:
            for lang, names in json.loads(text).items():
                if lang not in langs:
                    continue
                for alias in names:
                    words = tokenize(alias)
                    if is_function_word(words, stop_words):
                        skipped += 1
                        continue
                    key = alias_key(words, profile.case_sensitive)
                    if not key:
                        continue
                    aliases += 1
                    parts = key.split(KEY_SEP)
                    longest = max(longest, len(parts))
                    batch.append((key, num))
                    batch.extend((KEY_SEP.join(parts[:k]), None) for k in range(1, len(parts)))
        con.executemany("INSERT INTO staged_keys VALUES (?, ?)", batch)
        batch.clear()
    table = profile.table()
    con.executescript(
        f"""
        CREATE TABLE {table}(key TEXT PRIMARY KEY, ents TEXT, more INTEGER NOT NULL)
            WITHOUT ROWID;
        INSERT INTO {table}
            SELECT key, group_concat(DISTINCT num), max(num IS NULL)
            FROM staged_keys GROUP BY key ORDER BY key;
        DROP TABLE staged_keys;
        """
    )
    (keys,) = con.execute(f"SELECT count(*) FROM {table} WHERE ents IS NOT NULL").fetchone()
    logger.info(
        "KB index profile %s: %d aliases, %d keys, %d function-word aliases left out, %.1f s",
        profile.name,
        aliases,
        keys,
        skipped,
        time.perf_counter() - start,
    )
    return {**asdict(profile), "table": table, "keys": keys, "longest": longest}
