"""`relbridge align-sentences` and `relbridge eval-sentence-align`: document pairs -> sentence units.

    relbridge align-sentences --src a.de --tgt a.fr [--src b.de --tgt b.fr ...] --output units.txt
    relbridge eval-sentence-align --src dev.de --tgt dev.fr --gold dev.defr

Each ``--src``/``--tgt`` pair is one document. By default a file holds one
sentence per line (as Text+Berg and vecalign's data do); ``--split LANG`` splits
raw text with `relbridge.text.sentences` instead. ``align-sentences`` writes
vecalign's format, one unit per line with its score (``[0, 1]:[2]:0.7412``), a
blank line between documents. ``eval-sentence-align`` aligns the documents in
order and prints one JSON line: strict and lax precision, recall and F1 over all
of them (vecalign's ``score.py``) and sentences per second (embedding and DP,
after the encoder is loaded).
"""

from __future__ import annotations

import argparse
import json
import logging
import time

logger = logging.getLogger(__name__)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--src", action="append", required=True, help="source document (repeat for more)"
    )
    parser.add_argument(
        "--tgt", action="append", required=True, help="target document, one per --src, in order"
    )
    parser.add_argument(
        "--split",
        nargs=2,
        metavar=("SRC_LANG", "TGT_LANG"),
        help="split raw text into sentences in these languages (default: one sentence per line)",
    )
    parser.add_argument("--model", default=None, help="encoder (default: the bundled e5)")
    parser.add_argument(
        "--text-prefix", default="passage: ", help='put before every sentence (default "passage: ")'
    )
    parser.add_argument(
        "--no-blocks",
        action="store_true",
        help="sum sentence vectors for multi-sentence units instead of embedding the joined "
        "text (about 10x less encoder work, about 1 point less strict F1 on Text+Berg dev; default: off)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16 (default: auto)")
    parser.add_argument(
        "--max-unit",
        type=int,
        default=None,
        help="most sentences in one unit, both sides together (default: the aligner's)",
    )


def register(subparsers) -> None:
    align = subparsers.add_parser(
        "align-sentences",
        help="align the sentences of document pairs (vecalign-format output)",
        description=__doc__.split("\n\n")[0],
    )
    _add_common(align)
    align.add_argument("--output", required=True, help="file for the units ('-' for stdout)")
    align.set_defaults(func=_align)

    evaluate = subparsers.add_parser(
        "eval-sentence-align",
        help="score sentence alignment against gold units (strict/lax P/R/F1, sentences/s)",
        description=__doc__.split("\n\n")[0],
    )
    _add_common(evaluate)
    evaluate.add_argument(
        "--gold", action="append", required=True, help="gold units, one file per --src, in order"
    )
    evaluate.add_argument("--output", default=None, help="also write the predicted units here (default: none)")
    evaluate.set_defaults(func=_evaluate)


def _documents(args) -> list[tuple[list[str], list[str]]]:
    """Reads each --src/--tgt pair into sentence lists."""
    from relbridge.data_specs.formats import open_lines
    from relbridge.text.sentences import sentences

    if len(args.src) != len(args.tgt):
        raise ValueError(f"{len(args.src)} --src files but {len(args.tgt)} --tgt files")
    if args.split:  # the splitter takes any code; a typo would split by no language's rules
        from relbridge.data_specs.tokenizer import check_language

        for lang, side in zip(args.split, ("source", "target")):
            check_language(lang, side, tokenizer=False)
    docs = []
    for src_path, tgt_path in zip(args.src, args.tgt):
        sides = []
        for path, lang in zip((src_path, tgt_path), args.split or (None, None)):
            with open_lines(path) as lines:  # not UTF-8: FILE:LINE, not a bare codec error
                text = "".join(lines)
            if lang is None:  # one sentence per line, kept as is: gold indices count lines
                sents = [line.strip() for line in text.rstrip("\n").split("\n")] if text else []
            else:
                sents = sentences(text, lang)  # the splitter run --documents uses
            if not any(sents):  # nothing to align: a wrong or truncated file, not a result
                raise ValueError(f"{path}: no sentences (an empty document cannot be aligned)")
            sides.append(sents)
        docs.append((sides[0], sides[1]))
    return docs


def _align_all(args, docs):
    """Units per document and the seconds spent (encoder load excluded)."""
    import dataclasses

    from relbridge.alignment.sentence_align import SentenceAlignConfig, align_sentences
    from relbridge.alignment.sentence_embed import DocumentEncoder, SentenceEmbedConfig

    cfg = SentenceAlignConfig()
    if args.max_unit is not None:
        cfg = dataclasses.replace(cfg, max_unit=args.max_unit)
    encoder = DocumentEncoder(
        SentenceEmbedConfig(
            model=args.model,
            text_prefix=args.text_prefix,
            blocks=not args.no_blocks,
            device=args.device,
            dtype=args.dtype,
        )
    )
    start = time.perf_counter()
    vectors = encoder.embed_documents([side for doc in docs for side in doc], cfg.max_side)
    embedded = time.perf_counter()
    results = []
    for k in range(len(docs)):
        src, tgt = vectors[2 * k], vectors[2 * k + 1]
        results.append(
            align_sentences(
                src.vectors, tgt.vectors, src.lengths, tgt.lengths, cfg, src.blocks, tgt.blocks
            )
        )
    done = time.perf_counter()
    logger.info("embedding %.1f s, alignment %.1f s", embedded - start, done - embedded)
    return results, done - start


def _write_units(path: str, results) -> None:
    import sys

    from relbridge.alignment.sentence_eval import format_unit
    from relbridge.runtime.files import atomic_file

    text = "\n\n".join(
        "\n".join(format_unit(u.src, u.tgt, u.score) for u in units) for units in results
    )
    if path == "-":
        sys.stdout.write(text + "\n")
        return
    with atomic_file(path) as f:
        f.write(text + "\n")


def _align(args: argparse.Namespace) -> int:
    docs = _documents(args)
    results, seconds = _align_all(args, docs)
    _write_units(args.output, results)
    sentences = sum(len(s) + len(t) for s, t in docs)
    logger.info(
        "%d sentences in %.1f s (%.1f/s)", sentences, seconds, sentences / max(seconds, 1e-9)
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from relbridge.alignment.sentence_eval import read_numbered_alignment, score_alignments

    if len(args.gold) != len(args.src):
        raise ValueError(f"{len(args.src)} documents but {len(args.gold)} --gold files")
    numbered = [read_numbered_alignment(path) for path in args.gold]  # before the encoder
    for path, units in zip(args.gold, numbered):
        if not units:
            raise ValueError(f"{path}: no alignment units (an empty gold scores nothing)")
    docs = _documents(args)
    for path, units, (src, tgt) in zip(args.gold, numbered, docs):
        for line, s, t in units:
            if any(i >= len(src) for i in s) or any(j >= len(tgt) for j in t):
                raise ValueError(
                    f"{path}:{line}: unit {list(s)}:{list(t)} is outside the documents "
                    f"({len(src)} and {len(tgt)} sentences)"
                )
    golds = [[(s, t) for _, s, t in units] for units in numbered]
    results, seconds = _align_all(args, docs)
    if args.output:
        _write_units(args.output, results)
    scores = score_alignments(golds, [[(u.src, u.tgt) for u in units] for units in results])
    sentences = sum(len(s) + len(t) for s, t in docs)
    out = {k: round(v, 4) for k, v in scores.items()}
    out.update(
        documents=len(docs),
        sentences=sentences,
        seconds=round(seconds, 1),
        sentences_per_s=round(sentences / max(seconds, 1e-9), 1),
    )
    print(json.dumps(out))
    return 0
