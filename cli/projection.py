"""`relbridge eval-projection`: project source gold spans and score them on the target gold.

    relbridge eval-projection --format relx \\
        --src ../shared/data/relx/RELX_en.txt --tgt ../shared/data/relx/RELX_de.txt
    relbridge eval-projection --format conll \\
        --src ../shared/data/europarl-ner/en-europarl.test.conll02 \\
        --tgt ../shared/data/europarl-ner/de-europarl.test.conll02

aligns every pair with the project's `WordAligner` (or reads links saved by an
earlier run with ``--links``), projects the source gold with `project_pair`
under the `ProjectConfig` the flags describe, and prints one JSON line:
``precision``, ``recall``, ``f1`` (exact spans, same role or type),
``token_f1``, for RELX ``both_exact``, the same exact-span figures with
edge punctuation ignored on both sides (``punct_insensitive``: some RELX
translations hold a comma or hyphen inside the entity markers), the
projection counts and the configs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os

from relbridge.alignment.aligner import DEFAULT_PRESET
from relbridge.data_specs.languages import language_in_name

logger = logging.getLogger(__name__)

_ALIGN_FIELDS = ("method", "layer", "model", "token_type", "batch_size", "device", "dtype", "num_threads")


def project_flags() -> list:
    """One flag per `ProjectConfig` field (booleans as ``--x/--no-x``)."""
    from relbridge.projection.config import ProjectConfig
    from relbridge.runtime.flags import field_flags

    return field_flags(ProjectConfig)


def register(subparsers) -> None:
    from relbridge.cli.align import add_align_flags
    from relbridge.projection.config import SPAN_OBJECTIVES
    from relbridge.runtime.flags import add_flags

    parser = subparsers.add_parser(
        "eval-projection",
        help="score label projection on parallel gold (RELX or CoNLL BIO files)",
        description="Projects the source gold entities into the target with the word aligner "
        "and the projection rules, and scores them against the target gold. Flags left out "
        "take AlignConfig's and ProjectConfig's defaults.",
    )
    parser.add_argument(
        "--format", required=True, choices=("relx", "conll"), help="gold format: RELX or CoNLL BIO"
    )
    parser.add_argument("--src", required=True, help="source-language gold file")
    parser.add_argument("--tgt", required=True, help="target-language gold file (parallel)")
    parser.add_argument(
        "--no-gold-cuts",
        action="store_true",
        help="RELX: tokenise the target without splitting words at the gold boundaries "
        "(default: split there)",
    )
    parser.add_argument(
        "--src-lang",
        help="source language code (default: from the file name, e.g. RELX_en.txt -> en)",
    )
    parser.add_argument(
        "--tgt-lang",
        help="target language code (default: from the file name, e.g. de-europarl... -> de)",
    )
    parser.add_argument("--limit", type=int, help="only the first N pairs (default: all)")
    parser.add_argument(
        "--links",
        help="Pharaoh file of links, one line per pair: read if it exists, else written "
        "after aligning (to rerun projection settings without the encoder); the "
        "fallback method's links go to PATH.<method> beside it (default: align, keep nothing)",
    )
    parser.add_argument(
        "--errors", help="write the wrongly projected sentences here (TSV; default: not written)"
    )
    al = parser.add_argument_group("word aligner (AlignConfig)")
    al.add_argument(
        "--aligner",
        default=DEFAULT_PRESET,
        help=f"registered preset (default {DEFAULT_PRESET}, the pipeline's); "
        "e.g. simalign.argmax.v1 for stock simalign",
    )
    add_align_flags(al, _ALIGN_FIELDS)
    pr = parser.add_argument_group("projection rules (ProjectConfig)")
    add_flags(pr, project_flags(), given_only=True, choices={"span_objective": SPAN_OBJECTIVES})
    parser.set_defaults(func=_eval_projection, extra_layers=None)


def project_config_from_args(args: argparse.Namespace):
    """The `ProjectConfig` the projection flags describe."""
    from relbridge.projection.config import ProjectConfig
    from relbridge.runtime.flags import given

    return ProjectConfig(**given(args, project_flags()))


def _read_links(path: str, n_pairs: int) -> list:
    from relbridge.alignment.metrics import read_pharaoh

    links = [sorted(g.sure) for g in read_pharaoh(path)]
    if len(links) != n_pairs:
        raise ValueError(f"{path} has {len(links)} lines for {n_pairs} pairs")
    logger.info("read links of %d pairs from %s", n_pairs, path)
    return links


def _write_links(path: str, links: list) -> None:
    from relbridge.alignment.metrics import format_pharaoh

    with open(path, "w", encoding="utf-8") as f:
        f.writelines(format_pharaoh(x or ()) + "\n" for x in links)


def _eval_projection(args: argparse.Namespace) -> int:
    from dataclasses import asdict, replace

    from relbridge.cli.align import config_from_args
    from relbridge.projection import projection_eval as pe

    project_cfg = project_config_from_args(args)
    if args.format == "relx":
        pairs = pe.load_relx_pairs(args.src, args.tgt, gold_cuts=not args.no_gold_cuts)
    else:
        pairs = pe.load_conll_pairs(args.src, args.tgt)
    pairs = pairs[: args.limit] if args.limit else pairs
    align_cfg = config_from_args(args)
    fallback = project_cfg.fallback_method
    if fallback:
        align_cfg = replace(align_cfg, also=tuple(dict.fromkeys((*align_cfg.also, fallback))))
    extra = None
    if args.links and os.path.exists(args.links):
        links = _read_links(args.links, len(pairs))
        extra_path = f"{args.links}.{fallback}"
        if fallback and os.path.exists(extra_path):
            extra = _read_links(extra_path, len(pairs))
        elif fallback:
            logger.warning("%s missing: fallback links off for this run", extra_path)
    else:
        from relbridge.alignment.aligner import WordAligner

        methods = [fallback] if fallback else []
        aligner = WordAligner(align_cfg)
        links, by_method = pe.align_pairs(pairs, aligner, methods)
        extra = by_method.get(fallback)
        if args.links:
            _write_links(args.links, links)
            if fallback:
                _write_links(f"{args.links}.{fallback}", extra)
    src_lang = args.src_lang or language_in_name(args.src)
    tgt_lang = args.tgt_lang or language_in_name(args.tgt)
    if project_cfg.trim_function_words and not tgt_lang:
        logger.warning("no target language (--tgt-lang): function words are not trimmed")
    errors: list | None = [] if args.errors else None
    scores = pe.evaluate(pairs, links, project_cfg, errors, extra, src_lang, tgt_lang)
    if args.errors:
        with open(args.errors, "w", encoding="utf-8") as f:
            f.writelines(pe.format_error(*e) + "\n" for e in errors)
    report = {
        **scores.as_dict(),
        "format": args.format,
        "languages": [src_lang, tgt_lang],
        "align_config": asdict(align_cfg),
        "project_config": asdict(project_cfg),
    }
    print(json.dumps(report))
    return 0
