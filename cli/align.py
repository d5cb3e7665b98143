"""`relbridge eval-align`: align a gold set and print AER, precision, recall and speed.

    relbridge eval-align --pairs ../shared/data/alignment/enfr/enfr.src-tgt \\
        --gold ../shared/data/alignment/enfr/enfr.gold --gold-one-based --method itermax

prints one JSON line: ``aer``, ``precision``, ``recall`` (of the links the
configuration produces: the first method's, merged with eflomal's when
``--statistical`` is on), ``by_method`` (every neural method asked for, plus
``eflomal`` alone), ``pairs``, ``failed``, ``pairs_per_s`` (alignment time
only, model loading excluded, eflomal included) and the resolved ``config``.

    relbridge eval-align --pairs P --gold G --gold-one-based --statistical fill \
        --statistical-extra-corpus more.src-tgt   # neural links completed by eflomal's
"""

from __future__ import annotations

import argparse
import json
import logging

from relbridge.runtime.flags import comma_list

logger = logging.getLogger(__name__)

# AlignConfig fields whose flags map one to one (``num_threads`` is ``--threads``)
_FIELDS = (
    "model", "text_prefix", "layer", "token_type", "distortion", "itermax_iterations",
    "softmax_threshold", "softmax_temperature", "batch_size", "max_tokens", "max_length",
    "device", "dtype", "num_threads", "compile", "statistical",
)  # fmt: skip


def align_flags(fields: tuple[str, ...] = _FIELDS) -> list:
    """The `AlignConfig` flags of the commands that align (eval-align, eval-projection)."""
    from relbridge.alignment.aligner import AlignConfig
    from relbridge.runtime.flags import field_flags

    return field_flags(AlignConfig, fields, rename={"num_threads": "threads"})


def eflomal_flags() -> list:
    """``--statistical-extra-corpus``: `EflomalConfig.extra_corpus`."""
    from relbridge.alignment.statistical import EflomalConfig
    from relbridge.runtime.flags import field_flags

    return field_flags(
        EflomalConfig, ["extra_corpus"], prefix="statistical-",
        help={"extra_corpus": "more pre-tokenised 'src ||| tgt' text of the same pair for "
              "eflomal to train on"},
    )  # fmt: skip


def add_align_flags(parser, fields: tuple[str, ...] = _FIELDS) -> None:
    from relbridge.alignment.aligner import STATISTICAL, TOKEN_TYPES
    from relbridge.runtime.devices import DTYPE_NAMES
    from relbridge.runtime.flags import add_flags

    add_flags(
        parser, align_flags(fields), given_only=True, default_text="the preset's",
        choices={"statistical": STATISTICAL, "token_type": TOKEN_TYPES, "dtype": DTYPE_NAMES},
    )  # fmt: skip


def register(subparsers) -> None:
    from relbridge.runtime.flags import add_flags

    parser = subparsers.add_parser(
        "eval-align",
        help="score the word aligner on a gold set (AER, precision, recall, pairs/s)",
        description="Aligns a pre-tokenised 'src ||| tgt' file and scores it against Pharaoh gold "
        "(i-j sure, ipj possible). Flags left out take the preset's (--aligner), "
        "by default the pipeline's.",
    )
    parser.add_argument(
        "--pairs", required=True, help="pre-tokenised 'src ||| tgt' file, one pair per line"
    )
    parser.add_argument("--gold", required=True, help="Pharaoh gold, one line per pair")
    parser.add_argument(
        "--gold-one-based", action="store_true", help="gold indices start at 1 (awesome-align sets; default: 0-based)"
    )
    parser.add_argument(
        "--aligner",
        help="registered preset (default: the pipeline's, relbridge.default.v3); "
        "simalign.{argmax,itermax,match,mai}.v1 reproduce stock simalign",
    )
    parser.add_argument(
        "--method",
        type=comma_list(),
        help="method, comma-separated methods (the first one is scored as 'aer') or 'mai' "
        "(default: the preset's)",
    )
    parser.add_argument(
        "--extra-layers",
        type=comma_list(int),
        help="comma-separated hidden states averaged with --layer (default: the preset's)",
    )
    add_align_flags(parser)
    add_flags(parser, eflomal_flags(), given_only=True, default_text="the preset's")
    parser.add_argument(
        "--output", help="write the configuration's links here (0-based Pharaoh, one line per pair; "
        "default: not written)"
    )
    parser.add_argument("--limit", type=int, help="only the first N pairs (default: all)")
    parser.set_defaults(func=_eval_align)


def config_from_args(args: argparse.Namespace):
    """The `AlignConfig` the flags describe (preset, then explicit flags)."""
    from dataclasses import replace

    from relbridge.alignment.aligner import DEFAULT_PRESET, aligner_config
    from relbridge.alignment.methods import MAI
    from relbridge.runtime.flags import given

    overrides = given(args, align_flags())
    if args.extra_layers is not None:
        overrides["extra_layers"] = args.extra_layers
    if args.method is not None:
        methods = MAI if args.method == ("mai",) else args.method
        if not methods:
            raise ValueError("--method is empty")
        overrides["method"], overrides["also"] = methods[0], methods[1:]
    cfg = aligner_config(args.aligner or DEFAULT_PRESET, **overrides)
    eflomal = given(args, eflomal_flags())  # other commands reuse this without the flag
    if eflomal:
        cfg = replace(cfg, eflomal=replace(cfg.eflomal, **eflomal))
    return cfg


def _eval_align(args: argparse.Namespace) -> int:
    import time
    from dataclasses import asdict

    from relbridge.alignment.aligner import WordAligner
    from relbridge.alignment.metrics import (
        alignment_scores,
        check_gold_fits,
        format_pharaoh,
        read_pairs,
        read_pharaoh,
    )
    from relbridge.runtime.files import atomic_file

    cfg = config_from_args(args)
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    pairs = read_pairs(args.pairs, limit=args.limit)
    if not pairs:  # an AER of 0.0 over nothing would read as a perfect score
        raise ValueError(f"{args.pairs}: no sentence pairs")
    gold = read_pharaoh(args.gold, one_based=args.gold_one_based)
    if args.limit is not None:  # the gold's first N lines, as the pairs' first N
        gold = gold[: args.limit]
    if len(gold) != len(pairs):
        raise ValueError(f"{args.gold} has {len(gold)} lines for {len(pairs)} pairs")
    check_gold_fits(gold, pairs, args.gold, args.gold_one_based)
    aligner = WordAligner(cfg)
    start = time.perf_counter()
    results = aligner.align_corpus(pairs)
    elapsed = time.perf_counter() - start
    methods = cfg.methods + (("eflomal",) if cfg.statistical != "off" else ())
    by_method = {m: alignment_scores([r.by_method.get(m) for r in results], gold) for m in methods}
    first = alignment_scores([r.links for r in results], gold)
    if args.output:
        with atomic_file(args.output) as f:
            f.writelines(format_pharaoh(r.links or ()) + "\n" for r in results)
    failed = [(n, r.error) for n, r in enumerate(results) if r.links is None]
    for n, error in failed[:10]:
        logger.warning("pair %d not aligned: %s", n + 1, error)
    report = {
        "aer": round(first.aer, 4),
        "precision": round(first.precision, 4),
        "recall": round(first.recall, 4),
        "pairs": len(pairs),
        "failed": len(failed),
        "pairs_per_s": round(len(pairs) / elapsed, 2) if elapsed > 0 else None,
        "by_method": {m: s.as_dict() for m, s in by_method.items()},
        "config": {**asdict(cfg), "model_dir": aligner.model_dir},
    }
    print(json.dumps(report))
    return 0
