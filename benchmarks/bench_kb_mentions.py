"""Mention finding with the KB index on news sentences: open time and sentences per second.

    python benchmarks/bench_kb_mentions.py --kb ../shared/data/kb/wikidata-xfactr \
        --sentences ../shared/data/parallel/news-en-x/ntrex128.en-de.tsv --lang en [--reference]

Prints, side by side: the time to open the index (built first if the KB is a
directory without a cached index; the build is reported apart), and
`TextMentions` sentences/s (tokenising + alias matching + entity types) over
a column of the TSV. ``--reference`` also times today's in-memory
matcher (parse the KB, build a spaCy PhraseMatcher) on the same sentences and
checks that both find the same mentions.
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_texts(path: str, column: int, limit: int) -> list[str]:
    """The first ``limit`` non-blank texts of a TSV column (lines without that column skipped)."""
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            cells = line.rstrip("\n").split("\t")
            if len(texts) == limit:
                break
            if len(cells) > column and cells[column].strip():
                texts.append(cells[column].strip())
    return texts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kb", required=True)
    parser.add_argument("--sentences", required=True, help="a TSV of sentences")
    parser.add_argument("--column", type=int, default=1, help="the text's TSV column (from 0)")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--reference", action="store_true")
    args = parser.parse_args(argv)
    from relbridge.kb import MatchProfile, TextMentions, ensure_index, open_kb

    texts = read_texts(args.sentences, args.column, args.limit)
    if not texts:
        parser.error(f"{args.sentences}: no sentences in column {args.column}")
    profile = MatchProfile(args.lang, ())
    import spacy  # noqa: F401 (imported before the clock: both matchers need it)

    start = time.perf_counter()
    path = ensure_index(args.kb, [profile])
    built = time.perf_counter() - start
    start = time.perf_counter()
    finder = TextMentions(open_kb(path, [profile]), args.lang)
    opened = time.perf_counter() - start
    start = time.perf_counter()
    found = [finder(t) for t in texts]
    seconds = time.perf_counter() - start
    rows = [{"matcher": "KbIndex (sqlite)", "build_or_check_s": round(built, 2),
             "open_s": round(opened, 3), "sentences": len(texts),
             "sentences_per_s": round(len(texts) / seconds, 1),
             "mentions_per_sentence": round(sum(len(m) for _, m in found) / len(texts), 2),
             "peak_rss_mb": round(peak_rss_mb())}]
    if args.reference:
        from relbridge.data_specs.kb_format import load_kb

        start = time.perf_counter()
        old = TextMentions(load_kb(args.kb), args.lang)
        opened = time.perf_counter() - start
        start = time.perf_counter()
        expected = [old(t) for t in texts]
        seconds = time.perf_counter() - start
        rows.append({"matcher": "PhraseMatcher (in memory)", "build_or_check_s": 0.0,
                     "open_s": round(opened, 3), "sentences": len(texts),
                     "sentences_per_s": round(len(texts) / seconds, 1),
                     "mentions_per_sentence": round(sum(len(m) for _, m in expected) / len(texts), 2),
                     "peak_rss_mb": round(peak_rss_mb()),
                     "identical_mentions": expected == found})
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
