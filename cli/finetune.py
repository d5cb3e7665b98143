"""`relbridge finetune-aligner`: self-train the encoder on parallel text (awesome-align's SO).

    relbridge finetune-aligner --corpus ../shared/data/alignment/enfr/enfr.src-tgt \\
        --output runs/e5-enfr-ft --max-steps 200
    relbridge eval-align --model runs/e5-enfr-ft --pairs ... --gold ... --gold-one-based

Corpora are ``src ||| tgt`` pre-tokenised files, ``.tsv``/``.jsonl`` raw pairs
or two raw text files as ``SRC_FILE,TGT_FILE`` (see `alignment.finetune`).
Raw text is split on whitespace unless ``--src-lang/--tgt-lang`` are given,
then with the pipeline's spaCy tokenizers (jieba for Chinese, SudachiPy for
Japanese), so the words match those the pipeline aligns. Runs on CUDA when
available (bf16 autocast), else on CPU (slowly). Prints one JSON line: the
output directory, pairs, steps, seconds and the first and last logged losses.

The layer trained and the text prefix default to those of ``--aligner`` (the
pipeline's preset unless given), so ``relbridge run --model DIR`` aligns at
the hidden state that was fine-tuned; `WordAligner` warns when they differ.
"""

from __future__ import annotations

import argparse
import json

from relbridge.runtime.flags import comma_list

_FIELDS = (
    "corpus", "output", "model", "layer", "text_prefix", "softmax_threshold", "learning_rate",
    "weight_decay", "warmup_ratio", "batch_size", "epochs", "max_steps", "max_length",
    "max_pairs", "freeze_embeddings", "seed", "device", "bf16", "num_threads", "log_every",
    "save_every", "overwrite",
)  # fmt: skip
_PRESET = ("layer", "text_prefix")  # default: the --aligner preset's (SHARED_FIELDS)


def finetune_flags() -> list:
    """One flag per `FinetuneConfig` field the command sets."""
    from relbridge.alignment.finetune import FinetuneConfig
    from relbridge.runtime.flags import field_flags

    return field_flags(
        FinetuneConfig, _FIELDS, rename={"num_threads": "threads"},
        invert={"freeze_embeddings": "train_embeddings"},
    )  # fmt: skip


def register(subparsers) -> None:
    from relbridge.runtime.flags import add_flags

    parser = subparsers.add_parser(
        "finetune-aligner",
        help="fine-tune the alignment encoder on unlabelled parallel text (awesome-align SO)",
        description="Self-trains the encoder on its own bidirectional-softmax alignments "
        "(Dou and Neubig 2021) and writes a model directory that --model / "
        "AlignConfig(model=...) loads. Flags left out take FinetuneConfig's defaults.",
    )
    flags = finetune_flags()
    required = [f for f in flags if f.field in ("corpus", "output")]
    add_flags(parser, required)
    parser.add_argument(
        "--aligner",
        default=None,
        help="aligner preset the model is for: its layer and text prefix are the defaults "
        "(default: the pipeline's preset)",
    )
    add_flags(parser, [f for f in flags if f.field in _PRESET], given_only=True,
              default_text="the preset's")  # fmt: skip
    add_flags(parser, [f for f in flags if f not in required and f.field not in _PRESET],
              given_only=True)  # fmt: skip
    parser.add_argument(
        "--objectives",
        type=comma_list(),
        help="comma-separated: so (always) and optionally co (consistency) (default: so)",
    )
    parser.add_argument(
        "--src-lang", help="word-tokenise raw source text with spaCy, e.g. en (default: on spaces)"
    )
    parser.add_argument(
        "--tgt-lang", help="word-tokenise raw target text with spaCy, e.g. zh (default: on spaces)"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: a progress bar)"
    )
    parser.set_defaults(func=_finetune)


def config_from_args(args: argparse.Namespace):
    """The `FinetuneConfig` the flags describe."""
    from relbridge.alignment.aligner import DEFAULT_PRESET, SHARED_FIELDS, aligner_config
    from relbridge.alignment.finetune import FinetuneConfig
    from relbridge.runtime.flags import given

    preset = aligner_config(args.aligner or DEFAULT_PRESET)
    overrides = {k: getattr(preset, k) for k in SHARED_FIELDS}
    overrides |= given(args, finetune_flags())
    if args.objectives is not None:
        overrides["objectives"] = args.objectives
    return FinetuneConfig(**overrides)


def _splitter(lang: str | None):
    if not lang:
        return None
    from relbridge.pipeline.tokenize import make_tokenizer

    return make_tokenizer(lang)


def _finetune(args: argparse.Namespace) -> int:
    from relbridge.alignment.finetune import finetune_aligner, load_pairs

    cfg = config_from_args(args)
    pairs = load_pairs(cfg, _splitter(args.src_lang), _splitter(args.tgt_lang))
    summary = finetune_aligner(cfg, pairs, progress=not args.no_progress)
    history = summary["history"]
    report = {
        "output": cfg.output,
        "pairs": summary["pairs"],
        "steps": summary["steps"],
        "seconds": summary["seconds"],
        "first_loss": history[0]["loss"] if history else None,
        "last_loss": history[-1]["loss"] if history else None,
    }
    print(json.dumps(report))
    return 0
