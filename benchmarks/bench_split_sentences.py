"""Sentence-splitter boundary scores on news documents rebuilt from sentence-aligned text.

NTREX-128 stores one sentence (or headline) per line; joining every 10 lines into a
document and splitting it again measures how many of the true boundaries the
splitter finds (recall) and how many of its boundaries are true (precision).
Headlines carry no final stop, so no punctuation-based splitter reaches full recall;
a few lines hold two sentences, which count against precision.

    python benchmarks/bench_split_sentences.py ../shared/data/parallel/news-en-x
"""

from __future__ import annotations

import argparse
import json
import os

from relbridge.text.sentences import sentences

FILES = (("ntrex128.en-de.tsv", 1, "en"), ("ntrex128.en-de.tsv", 2, "de"),
         ("ntrex128.en-fr.tsv", 2, "fr"), ("ntrex128.en-zh.tsv", 2, "zh"))


def boundaries(pieces: list[str]) -> set[int]:
    """Sentence ends as counts of non-space characters, so joins and trims don't matter."""
    ends, count = set(), 0
    for piece in pieces[:-1]:
        count += len("".join(piece.split()))
        ends.add(count)
    return ends


def score(lines: list[str], lang: str, doc_size: int = 10) -> dict[str, float]:
    joiner = "" if lang in ("zh", "ja") else " "
    true = found = hits = 0
    for i in range(0, len(lines), doc_size):
        gold = lines[i : i + doc_size]
        predicted = boundaries(sentences(joiner.join(gold), lang))
        expected = boundaries(gold)
        true, found, hits = true + len(expected), found + len(predicted), hits + len(expected & predicted)
    precision, recall = hits / max(found, 1), hits / max(true, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    return {"lang": lang, "boundaries": true, "precision": round(precision, 3),
            "recall": round(recall, 3), "f1": round(f1, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("news_dir", help="the news-en-x folder of the shared data")
    args = parser.parse_args()
    for name, column, lang in FILES:
        with open(os.path.join(args.news_dir, name), encoding="utf-8") as handle:
            rows = [line.rstrip("\n").split("\t") for line in handle]
        lines = [row[column].strip() for row in rows if len(row) > column and row[column].strip()]
        print(json.dumps(score(lines, lang)))


if __name__ == "__main__":
    main()
