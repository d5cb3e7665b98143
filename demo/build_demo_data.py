"""Rebuilds the embedded demo data from RELX (MIT), English-German.

    python -m relbridge.demo.build_demo_data --relx ../shared/data/relx --out demo/data

Writes:
  * ``RELX_en.txt``, ``RELX_de.txt``: the RELX gold files, unchanged (MIT).
  * ``split.json``: RELX ids split into ``train`` and ``test`` by a hash of the
    id (one in five is test), fixed before the pipeline ever runs.
  * ``relx_ende_train.tsv``: ``id<TAB>English<TAB>German`` for the train ids,
    entity markers stripped: the bilingual corpus the pipeline reads. No test
    sentence is in it.
  * ``kb/entities.jsonl``, ``kb/triples.jsonl``: a small KB built from the
    English annotations of the train ids only: each marked entity's surface
    form is an English alias (same surface form, same entity), and each
    labelled sentence gives a directed (subject, relation, object) triple.
    Entity types come from the relation's argument signature (per:* subjects
    are PER, *_of_headquarters objects LOC, ...); unknown types stay empty.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil

from relbridge.data_specs.relations import NA
from relbridge.data_specs.relx import read_relx

logger = logging.getLogger(__name__)

TEST_EVERY = 5

OBJECT_TYPES = {
    "org:alternate_names": "ORG",
    "org:city_of_headquarters": "LOC",
    "org:country_of_headquarters": "LOC",
    "org:stateorprovince_of_headquarters": "LOC",
    "org:founded": "DATE",
    "org:founded_by": "PER",
    "org:members": "ORG",
    "org:subsidiaries": "ORG",
    "org:top_members/employees": "PER",
    "per:alternate_names": "PER",
    "per:cities_of_residence": "LOC",
    "per:countries_of_residence": "LOC",
    "per:country_of_birth": "LOC",
    "per:stateorprovinces_of_residence": "LOC",
    "per:employee_of": "ORG",
    "per:origin": "MISC",
    "per:spouse": "PER",
    "per:title": "TITLE",
}
"""The object's entity type for each KBP relation (the subject's is its prefix)."""


def is_test(record_id: str) -> bool:
    """One id in `TEST_EVERY` is held out, chosen by a hash of the id."""
    return int(hashlib.sha1(record_id.encode()).hexdigest(), 16) % TEST_EVERY == 0


def entity_id(surface: str) -> str:
    """A readable, stable entity id from an English surface form."""
    slug = re.sub(r"\W+", "_", surface.strip()).strip("_")
    return f"relx:{slug}"


def build(relx_dir: str, out_dir: str) -> dict[str, int]:
    """Writes the demo files; returns counts for the log."""
    os.makedirs(os.path.join(out_dir, "kb"), exist_ok=True)
    for lang in ("en", "de"):
        shutil.copyfile(
            os.path.join(relx_dir, f"RELX_{lang}.txt"), os.path.join(out_dir, f"RELX_{lang}.txt")
        )
    en = read_relx(os.path.join(relx_dir, "RELX_en.txt"))
    de = {r.id: r for r in read_relx(os.path.join(relx_dir, "RELX_de.txt"))}
    split = {
        "train": [r.id for r in en if not is_test(r.id)],
        "test": [r.id for r in en if is_test(r.id)],
    }
    with open(os.path.join(out_dir, "split.json"), "w", encoding="utf-8") as f:
        json.dump(split, f, indent=1)

    entities: dict[str, dict] = {}
    triples: set[tuple[str, str, str]] = set()
    pairs = 0
    with open(os.path.join(out_dir, "relx_ende_train.tsv"), "w", encoding="utf-8") as tsv:
        for record in en:
            if is_test(record.id):
                continue
            tsv.write(f"{record.id}\t{record.text}\t{de[record.id].text}\n")
            pairs += 1
            relation, subj, obj = record.subject_object()
            ids = []
            for span, role in ((subj, "subject"), (obj, "object")):
                surface = record.text[span[0] : span[1]].strip()
                if not surface:
                    continue  # RELX 17785 has an empty entity
                eid = entity_id(surface)
                etype = ""
                if relation != NA:
                    etype = (
                        relation.split(":")[0].upper()
                        if role == "subject"
                        else OBJECT_TYPES[relation]
                    )
                entry = entities.setdefault(
                    eid, {"id": eid, "type": etype, "aliases": {"en": [surface]}}
                )
                entry["type"] = entry["type"] or etype
                ids.append(eid)
            if relation != NA and len(ids) == 2 and ids[0] != ids[1]:
                triples.add((ids[0], relation, ids[1]))

    with open(os.path.join(out_dir, "kb", "entities.jsonl"), "w", encoding="utf-8") as f:
        for eid in sorted(entities):
            f.write(json.dumps(entities[eid], ensure_ascii=False) + "\n")
    with open(os.path.join(out_dir, "kb", "triples.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(
            json.dumps({"subject": s, "relation": r, "object": o}, ensure_ascii=False) + "\n"
            for s, r, o in sorted(triples)
        )
    counts = {
        "train_pairs": pairs,
        "test_ids": len(split["test"]),
        "entities": len(entities),
        "triples": len(triples),
    }
    logger.info("demo data: %s", counts)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--relx", required=True, help="directory with RELX_en.txt and RELX_de.txt")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "data"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    build(args.relx, args.out)


if __name__ == "__main__":
    main()
