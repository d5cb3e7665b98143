"""What distant supervision finds in a pipeline run, and what harvested aliases add to linking.

Reads the output folders of ``relbridge run``: a *harvest* run (its shards and
its ``aliases.jsonl``) and a *held-out* run on other text of the same language
pair. Prints, as one JSON document:

1. per run, what distant supervision found: pairs, source mentions (per entity
   type, distinct entities), relation instances per KB relation (and per KBP37
   relation through the KB's ``relation_map.json`` where it has one), and the
   projected share of mentions and of relation instances;
2. linking of the held-out run's target-language entity mentions (its projected
   mentions, not retyped: silver spans with a KB id) by their surface string
   (`relbridge.models.triples.EntityLinker`, the linker of ``relbridge
   triples``), untyped and typed (with the silver type, which is the right
   entity's: an upper bound for a tagger's types), with the KB alone and with
   the KB plus the harvest run's aliases at each ``--min-count``: the share
   linked, linked to the right entity, and left ambiguous or unknown;
3. KB mentions found in the held-out run's raw target sentences
   (`relbridge.kb.TextMentions`, what ``relbridge extract --kb``
   uses), with and without the harvested aliases: mentions per sentence and
   the share of silver spans found exactly.

    python benchmarks/news_linking.py --harvest out/news/ntrex-de --heldout out/news/wmt21-de \\
        --kb ../shared/data/kb/wikidata-xfactr --alias-langs en

Silver spans come from the same projection that harvested the aliases, so
section 2 measures how far harvested names carry to other text, not linking
accuracy against a human gold.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections import Counter

from relbridge.data_specs import read_shards
from relbridge.data_specs.aliases import add_aliases, load_alias_files
from relbridge.data_specs.relations import NA
from relbridge.models.triples import EntityLinker
from relbridge.pipeline.harvest import ALIASES, projected_names
from relbridge.data_specs.kb_format import load_kb as read_kb
from relbridge.kb import TextMentions

logger = logging.getLogger("news_linking")


def kbp37_mapper(kb, kb_dir: str):
    """``(subject id, relation, object id) -> (kbp37 relation, reversed) | None`` from relation_map.json."""
    path = os.path.join(kb_dir, "relation_map.json")
    if not os.path.exists(path):
        return lambda s, r, o: None
    with open(path) as f:
        rules = json.load(f)
    levels = {}
    level_file = os.path.join(kb_dir, "location_levels.tsv")
    if os.path.exists(level_file):
        with open(level_file) as f:
            levels = dict(line.rstrip("\n").split("\t")[:2] for line in f if "\t" in line)

    def fits(allowed, value):
        return allowed is None or value in allowed

    def mapped(s: str, r: str, o: str):
        for rule in rules.get(r, ()):
            s_type, o_type = kb.entities[s].type, kb.entities[o].type
            if (
                fits(rule["subject_type"], s_type)
                and fits(rule["object_type"], o_type)
                and fits(rule["object_level"], levels.get(o))
            ):
                return rule["kbp37"], bool(rule["reverse"])
        return None

    return mapped


def distant_supervision(run_dir: str, kb, kb_dir: str) -> dict:
    """What the run's shards hold (section 1)."""
    rows = read_shards(os.path.join(run_dir, "shards"))
    with open(os.path.join(run_dir, "stats.json")) as f:
        stats = json.load(f)
    mapped = kbp37_mapper(kb, kb_dir)
    types, entities = Counter(), set()
    per_relation, per_kbp37 = Counter(), Counter()
    projected_relation, projected_kbp37 = Counter(), Counter()
    positives = projected_positives = na = 0
    rows_with_mentions = rows_with_facts = rows_with_kbp37 = 0
    for row in rows:
        rows_with_mentions += bool(row.src_mentions)
        for m in row.src_mentions:
            types[m.type] += 1
            entities.add(m.kb_id)
        has_fact = has_kbp37 = False
        for rel in row.relations:
            if rel.label == NA:
                na += 1
                continue
            has_fact = True
            positives += 1
            projected_positives += rel.projected
            per_relation[rel.label] += 1
            projected_relation[rel.label] += rel.projected
            s, o = row.src_mentions[rel.subject].kb_id, row.src_mentions[rel.object].kb_id
            kbp = mapped(s, rel.label, o)
            if kbp:
                has_kbp37 = True
                per_kbp37[kbp[0]] += 1
                projected_kbp37[kbp[0]] += rel.projected
        rows_with_facts += has_fact
        rows_with_kbp37 += has_kbp37
    src = sum(types.values())
    tgt = sum(len(r.tgt_mentions) for r in rows)
    return {
        "run": run_dir,
        "input_records": stats["input_records"],
        "rows": len(rows),
        "dead_letters": stats["dead_letters"],
        "rows_with_mentions": rows_with_mentions,
        "source_mentions": src,
        "source_mentions_per_type": dict(types.most_common()),
        "distinct_entities": len(entities),
        "projected_mentions": tgt,
        "projected_mention_share": round(tgt / src, 4) if src else None,
        "rows_with_a_fact": rows_with_facts,
        "rows_with_a_kbp37_fact": rows_with_kbp37,
        "relation_instances": positives,
        "na_instances": na,
        "projected_relation_instances": projected_positives,
        "projected_relation_share": round(projected_positives / positives, 4)
        if positives
        else None,
        "relation_instances_per_kb_relation": {
            r: {"instances": n, "projected": projected_relation[r]}
            for r, n in per_relation.most_common()
        },
        "relation_instances_per_kbp37_relation": {
            r: {"instances": n, "projected": projected_kbp37[r]} for r, n in per_kbp37.most_common()
        },
        "harvest": {k: v for k, v in stats["counts"].items() if k.startswith("harvest:")},
    }


def silver_mentions(rows) -> list[tuple[str, str, str, str]]:
    """``(pair id, kb id, type, surface)`` of every projected, not retyped, target mention."""
    out = []
    for row in rows:
        for item in projected_names(row):
            if isinstance(item, tuple):
                (kb_id, etype, _, name), (_, _, (pair_id,)) = item
                out.append((pair_id, kb_id, etype, name))
    return out


def link_shares(linker: EntityLinker, mentions, typed: bool = True) -> dict:
    """How the linker does on silver mentions by their surface string (and type) (section 2)."""
    counts = Counter()
    for _, kb_id, etype, name in mentions:
        link = linker.link(name, etype if typed else "")
        if link.id:
            counts["linked_right" if link.id == kb_id else "linked_wrong"] += 1
        elif link.candidates:
            counts["ambiguous_with_right" if kb_id in link.candidates else "ambiguous_without"] += 1
        else:
            counts["unknown"] += 1
    n = len(mentions)
    linked = counts["linked_right"] + counts["linked_wrong"]
    return {
        "mentions": n,
        "linked": linked,
        "linked_share": round(linked / n, 4) if n else None,
        "linked_right_share": round(counts["linked_right"] / n, 4) if n else None,
        **{k: counts[k] for k in ("linked_right", "linked_wrong", "ambiguous_with_right",
                                  "ambiguous_without", "unknown")},
    }  # fmt: skip


def silver_spans(rows) -> set[tuple[str, int, int]]:
    """``(pair id, start, end)`` of the target mentions that `silver_mentions` keeps."""
    return {
        (row.pair_id, m.start, m.end)
        for row in rows
        for m, item in zip(row.tgt_mentions, projected_names(row))
        if isinstance(item, tuple)
    }


def text_mentions(kb, rows, lang: str, alias_langs: list[str]) -> dict:
    """KB mentions in the held-out raw target sentences (section 3)."""
    start = time.perf_counter()
    finder = TextMentions(kb, lang, alias_langs)
    built = time.perf_counter() - start
    silver = silver_spans(rows)
    found = hits = 0
    start = time.perf_counter()
    for row in rows:
        words, mentions = finder(row.tgt_text)
        if list(words) != list(row.tgt_tokens):
            continue  # tokenised otherwise than the shard: spans not comparable (not expected)
        found += len(mentions)
        hits += sum((row.pair_id, s, e) in silver for s, e, _ in mentions)
    return {
        "alias_langs": alias_langs,
        "sentences": len(rows),
        "mentions_found": found,
        "mentions_per_sentence": round(found / len(rows), 3) if rows else None,
        "silver_spans": len(silver),
        "silver_spans_found": hits,
        "silver_recall": round(hits / len(silver), 4) if silver else None,
        "found_that_are_silver": round(hits / found, 4) if found else None,
        "matcher_build_s": round(built, 1),
        "match_s": round(time.perf_counter() - start, 1),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--harvest", required=True, help="relbridge run output whose aliases to use"
    )
    parser.add_argument("--heldout", required=True, help="relbridge run output on other text")
    parser.add_argument("--kb", required=True, help="the KB directory both runs used")
    parser.add_argument("--lang", default="de", help="target language (default: de)")
    parser.add_argument(
        "--alias-langs", default="en", help="KB alias languages to match in raw text (default: en)"
    )
    parser.add_argument("--min-counts", default="1,2", help="harvested-name count thresholds")
    parser.add_argument("--output", help="also write the JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    kb = read_kb(args.kb)
    result = {
        "distant_supervision": [
            distant_supervision(d, kb, args.kb) for d in (args.harvest, args.heldout)
        ]
    }
    rows = read_shards(os.path.join(args.heldout, "shards"))
    mentions = silver_mentions(rows)
    aliases = os.path.join(args.harvest, ALIASES)
    kbs = {"kb": kb}
    for n in (int(x) for x in args.min_counts.split(",")):
        kbs[f"kb+harvested(min_count={n})"] = add_aliases(kb, load_alias_files([aliases], n))
    linkers = {name: EntityLinker(k) for name, k in kbs.items()}
    result["linking_heldout_mentions"] = {
        f"{name}, {'typed' if typed else 'untyped'}": link_shares(linker, mentions, typed)
        for typed in (False, True)
        for name, linker in linkers.items()
    }
    langs = [x.strip() for x in args.alias_langs.split(",") if x.strip()]
    result["raw_text_kb_mentions"] = {
        "kb": text_mentions(kb, rows, args.lang, langs),
        "kb+harvested(min_count=1)": text_mentions(
            kbs["kb+harvested(min_count=1)"], rows, args.lang, sorted({*langs, args.lang})
        ),
    }
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
