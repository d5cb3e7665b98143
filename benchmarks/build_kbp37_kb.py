"""Builds a KB from KBP37 train+dev facts, minus every fact and sentence that RELX contains.

A realistic KB for measuring raw-text extraction on RELX (`relbridge evaluate
--raw-text --kb DIR`, `relbridge benchmark relx --kb DIR`) must not hold the test
sentences' own annotations: RELX-en reuses 502 KBP37 test sentences, and the
same fact (subject, relation, object) or the same sentence may occur in KBP37
train/dev too. So this leaves out every KBP37 record whose id or sentence text
is a RELX one, and every fact whose argument strings and relation match a fact
of any RELX file (any language, case-insensitive). KBP37 has no license: run this
where the data lies, write the KB outside the repository, never commit it.

    python benchmarks/build_kbp37_kb.py --kbp37 ../shared/data/kbp37 \
        --relx ../shared/data/relx --output out/kbp37_kb

Entities are the argument strings (id ``kbp37:<name>``, English alias); a
subject of a ``per:`` relation is typed PER and of an ``org:`` relation ORG when
every fact agrees, else untyped. The files appear whole or not at all.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
from collections import Counter, defaultdict

from relbridge.data_specs.relations import NA
from relbridge.data_specs.relx import read_relx

logger = logging.getLogger(__name__)


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def relx_exclusions(relx_dir: str) -> tuple[set[str], set[str], set[tuple[str, str, str]]]:
    """RELX ids, sentence texts and facts ``(subject, relation, object)`` (normalised), all languages."""
    ids, texts, facts = set(), set(), set()
    for path in sorted(glob.glob(os.path.join(relx_dir, "RELX_*.txt"))):
        for rec in read_relx(path):
            ids.add(rec.id)
            texts.add(_key(rec.text))
            relation, subj, obj = rec.subject_object()
            if relation != NA:
                facts.add((_key(rec.text[slice(*subj)]), relation, _key(rec.text[slice(*obj)])))
    if not ids:
        raise ValueError(f"{relx_dir}: no RELX_*.txt file")
    return ids, texts, facts


def build_kb(kbp37_dir: str, relx_dir: str) -> tuple[list[dict], list[dict], Counter]:
    """Entities and triples of KBP37 train+dev without RELX; and the counts of what was left out."""
    ids, texts, relx_facts = relx_exclusions(relx_dir)
    counts: Counter = Counter()
    names: dict[str, str] = {}  # key -> first spelling
    types: dict[str, set[str]] = defaultdict(set)
    triples: dict[tuple[str, str, str], None] = {}
    for split in ("train", "dev"):
        for rec in read_relx(os.path.join(kbp37_dir, f"{split}.txt")):
            counts["records"] += 1
            relation, subj, obj = rec.subject_object()
            if relation == NA:
                counts["no_relation"] += 1
                continue
            s_text, o_text = rec.text[slice(*subj)].strip(), rec.text[slice(*obj)].strip()
            fact = (_key(s_text), relation, _key(o_text))
            if rec.id in ids:
                counts["left_out_relx_id"] += 1
            elif _key(rec.text) in texts:
                counts["left_out_relx_sentence"] += 1
            elif fact in relx_facts:
                counts["left_out_relx_fact"] += 1
            elif not fact[0] or not fact[2] or fact[0] == fact[2]:
                counts["left_out_empty_or_same"] += 1
            else:
                names.setdefault(fact[0], s_text)
                names.setdefault(fact[2], o_text)
                types[fact[0]].add(relation.split(":")[0].upper())
                types[fact[2]]  # noqa: B018 (known, maybe untyped)
                triples[fact] = None
    entity_id = {k: "kbp37:" + names[k].replace(" ", "_") for k in names}
    entities = []
    seen_ids: set[str] = set()
    for k in sorted(names):
        if entity_id[k] in seen_ids:  # two spellings that differ only in case share an id
            entity_id[k] += f"#{len(seen_ids)}"
        seen_ids.add(entity_id[k])
        typed = types[k] if len(types[k]) == 1 else set()
        entities.append(
            {"id": entity_id[k], "type": next(iter(typed), ""), "aliases": {"en": [names[k]]}}
        )
    facts = [
        {"subject": entity_id[s], "relation": r, "object": entity_id[o]} for s, r, o in triples
    ]
    counts["entities"], counts["triples"] = len(entities), len(facts)
    return entities, facts, counts


def write_kb(output: str, entities: list[dict], triples: list[dict]) -> None:
    """Writes ``entities.jsonl`` and ``triples.jsonl``, each through a temporary file."""
    os.makedirs(output, exist_ok=True)
    for name, rows in (("entities.jsonl", entities), ("triples.jsonl", triples)):
        path = os.path.join(output, name)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        os.replace(path + ".tmp", path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kbp37", required=True, help="directory with KBP37 train.txt, dev.txt")
    parser.add_argument("--relx", required=True, help="directory with RELX_*.txt")
    parser.add_argument("--output", required=True, help="KB directory to write (outside the repo)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    entities, triples, counts = build_kb(args.kbp37, args.relx)
    write_kb(args.output, entities, triples)
    print(json.dumps(dict(counts), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
