"""Sentence alignment time and memory: the dev document, and one 10x longer.

Aligns Text+Berg dev (de-fr) and a synthetic document made of the dev document
concatenated ``--repeat`` times (10 by default) on both sides, and prints, side
by side, the coarse-to-fine search (the default) and the exact search over the
whole ``(n + 1) x (m + 1)`` table (the baseline), each with its best wall time
of three runs and the peak memory of a fourth (tracemalloc: numpy's buffers
included). The exact search is run on
the longer document only when its table stays under ``--exact-limit`` cells;
otherwise its memory is extrapolated from the dev run and marked so.

The encoder embeds each sentence once (the long document repeats dev's
sentences, so their vectors are dev's; only the joined runs across a seam are
new): encoder time grows with the sentence count by construction, and is
printed for dev. What this measures is the search, which is where quadratic
growth would hide.

    python benchmarks/bench_sentence_align.py ../shared/data/sentence-alignment/textberg-defr
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import time
import tracemalloc

import numpy as np

from relbridge.alignment.sentence_align import SentenceAlignConfig, align_sentences, block_vectors
from relbridge.alignment.sentence_embed import DocumentEncoder, SentenceEmbedConfig

logger = logging.getLogger(__name__)


def read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f.read().rstrip("\n").split("\n")]


def run_case(src_doc, tgt_doc, cfg: SentenceAlignConfig, repeats: int = 3) -> dict:
    """Best wall time of ``repeats`` runs, then peak MiB of one more run under tracemalloc.

    tracemalloc slows every allocation, so the timed runs go without it.
    """

    def once():
        return align_sentences(
            src_doc.vectors, tgt_doc.vectors, src_doc.lengths, tgt_doc.lengths, cfg,
            src_doc.blocks, tgt_doc.blocks,
        )  # fmt: skip

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        units = once()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    once()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "seconds": round(min(times), 3),
        "peak_mib": round(peak / 2**20, 1),
        "units": len(units),
    }


def repeated(doc, times: int, max_side: int):
    """The document ``times`` over: vectors and lengths tiled; runs of sentences as sums at seams."""
    vectors = np.tile(doc.vectors, (times, 1))
    lengths = np.tile(doc.lengths, times)
    blocks = None
    if doc.blocks:
        sums = block_vectors(vectors, max_side)  # only used where a run crosses a seam
        blocks = {}
        n = len(doc.vectors)
        for k, rows in doc.blocks.items():
            tiled = np.tile(rows, (times, 1))
            for t in range(1, times):
                seam = slice(t * n, t * n + k - 1)
                tiled[seam] = sums[k][seam]
            blocks[k] = tiled
    return dataclasses.replace(doc, vectors=vectors, lengths=lengths, blocks=blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="folder with dev.de and dev.fr")
    parser.add_argument(
        "--repeat", type=int, default=10, help="length of the long document, in devs"
    )
    parser.add_argument(
        "--exact-limit", type=int, default=4_000_000, help="largest exact table, cells"
    )
    parser.add_argument("--model", default=None)
    parser.add_argument(
        "--no-blocks", action="store_true", help="sum vectors for runs of sentences"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    cfg = SentenceAlignConfig()
    exact = dataclasses.replace(cfg, exact_cells=10**12)
    src_lines = read_lines(os.path.join(args.data, "dev.de"))
    tgt_lines = read_lines(os.path.join(args.data, "dev.fr"))
    encoder = DocumentEncoder(SentenceEmbedConfig(model=args.model, blocks=not args.no_blocks))
    start = time.perf_counter()
    src, tgt = encoder.embed_documents([src_lines, tgt_lines], cfg.max_side)
    encode_s = time.perf_counter() - start
    sentences = len(src_lines) + len(tgt_lines)
    print(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "encoder": {"sentences": sentences, "seconds": round(encode_s, 1),
                    "sentences_per_s": round(sentences / encode_s, 1), "dtype": str(encoder.embedder.dtype)},
    }))  # fmt: skip

    long_src, long_tgt = (repeated(d, args.repeat, cfg.max_side) for d in (src, tgt))
    rows = []
    for name, (s, t) in (("dev", (src, tgt)), (f"dev x{args.repeat}", (long_src, long_tgt))):
        cells = (len(s.vectors) + 1) * (len(t.vectors) + 1)
        row = {"document": name, "sentences": len(s.vectors) + len(t.vectors), "table_cells": cells}
        row["coarse_to_fine"] = run_case(s, t, cfg)
        if cells <= args.exact_limit:
            row["exact"] = run_case(s, t, exact)
        rows.append(row)
    base, long = rows
    if "exact" not in long:
        scale = long["table_cells"] / base["table_cells"]
        long["exact"] = {
            "peak_mib": round(base["exact"]["peak_mib"] * scale, 1),
            "extrapolated": True,
        }
    for row in rows:
        print(json.dumps(row))
    ratio = long["coarse_to_fine"]["seconds"] / max(base["coarse_to_fine"]["seconds"], 1e-9)
    mem = long["coarse_to_fine"]["peak_mib"] / max(base["coarse_to_fine"]["peak_mib"], 1e-9)
    print(json.dumps({
        "length_ratio": round(long["sentences"] / base["sentences"], 1),
        "time_ratio": round(ratio, 2),
        "memory_ratio": round(mem, 2),
        "target": "time_ratio <= 12 for 10x; memory grows with length, not length squared",
    }))  # fmt: skip


if __name__ == "__main__":
    main()
