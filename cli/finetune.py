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

# flag -> FinetuneConfig field, for the flags that map one to one
_FIELDS = {
    "output": "output",
    "model": "model",
    "layer": "layer",
    "text_prefix": "text_prefix",
    "softmax_threshold": "softmax_threshold",
    "learning_rate": "learning_rate",
    "weight_decay": "weight_decay",
    "warmup_ratio": "warmup_ratio",
    "batch_size": "batch_size",
    "epochs": "epochs",
    "max_steps": "max_steps",
    "max_length": "max_length",
    "max_pairs": "max_pairs",
    "seed": "seed",
    "device": "device",
    "threads": "num_threads",
    "log_every": "log_every",
    "save_every": "save_every",
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "finetune-aligner",
        help="fine-tune the alignment encoder on unlabelled parallel text (awesome-align SO)",
        description="Self-trains the encoder on its own bidirectional-softmax alignments "
        "(Dou and Neubig 2021) and writes a model directory that --model / "
        "AlignConfig(model=...) loads. Flags left out take FinetuneConfig's defaults.",
    )
    parser.add_argument(
        "--corpus",
        required=True,
        nargs="+",
        help="corpus file(s): 'src ||| tgt' pre-tokenised, .tsv/.jsonl raw pairs, "
        "or SRC_FILE,TGT_FILE raw text",
    )
    parser.add_argument("--output", required=True, help="directory for the fine-tuned model")
    parser.add_argument(
        "--model", help="base encoder name or directory (default: bundled e5-small)"
    )
    parser.add_argument(
        "--aligner",
        default=None,
        help="aligner preset the model is for: its layer and text prefix are the defaults "
        "(default: the pipeline's preset)",
    )
    parser.add_argument("--layer", type=int, help="align layer to train (default: the preset's)")
    parser.add_argument(
        "--text-prefix", help="text before every sentence (default: the preset's, e.g. 'passage: ')"
    )
    parser.add_argument(
        "--softmax-threshold", type=float, help="threshold of the self-training links (1e-3)"
    )
    parser.add_argument(
        "--objectives", help="comma-separated: so (always) and optionally co (consistency)"
    )
    parser.add_argument("--learning-rate", type=float, help="AdamW peak learning rate (1e-4)")
    parser.add_argument("--weight-decay", type=float, help="AdamW weight decay (0)")
    parser.add_argument("--warmup-ratio", type=float, help="share of steps warming up (0.1)")
    parser.add_argument("--batch-size", type=int, help="sentence pairs per step (8)")
    parser.add_argument("--epochs", type=int, help="passes over the corpus (1)")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps")
    parser.add_argument("--max-length", type=int, help="subwords per side incl. special tokens")
    parser.add_argument("--max-pairs", type=int, help="use only the first N pairs")
    parser.add_argument(
        "--train-embeddings",
        action="store_true",
        help="also train the word-embedding matrix (frozen by default: cheaper on CPU)",
    )
    parser.add_argument("--seed", type=int, help="random seed (42)")
    parser.add_argument("--device", help="auto, cpu or cuda[:N]")
    parser.add_argument(
        "--no-bf16", action="store_true", help="no bf16 autocast (on CUDA and native-bf16 CPUs)"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--log-every", type=int, help="steps between loss logs (10)")
    parser.add_argument("--save-every", type=int, help="steps between checkpoints (0 = end)")
    parser.add_argument("--src-lang", help="word-tokenise raw source text with spaCy (e.g. en)")
    parser.add_argument("--tgt-lang", help="word-tokenise raw target text with spaCy (e.g. zh)")
    parser.add_argument("--overwrite", action="store_true", help="replace a model in --output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_finetune)


def config_from_args(args: argparse.Namespace):
    """The `FinetuneConfig` the flags describe."""
    from relbridge.alignment.aligner import DEFAULT_PRESET, SHARED_FIELDS, aligner_config
    from relbridge.alignment.finetune import FinetuneConfig

    preset = aligner_config(args.aligner or DEFAULT_PRESET)
    overrides = {k: getattr(preset, k) for k in SHARED_FIELDS}
    overrides |= {
        f: getattr(args, a) for a, f in _FIELDS.items() if getattr(args, a, None) is not None
    }
    if args.objectives is not None:
        overrides["objectives"] = tuple(o.strip() for o in args.objectives.split(",") if o.strip())
    return FinetuneConfig(
        corpus=tuple(args.corpus),
        freeze_embeddings=not args.train_embeddings,
        bf16=not args.no_bf16,
        overwrite=args.overwrite,
        **overrides,
    )


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
