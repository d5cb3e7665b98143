"""`relbridge triples`: extract records -> one knowledge-graph triple per fact.

``relbridge triples --input triples.jsonl [more.jsonl ...] --output kg.jsonl
[--kb DIR [--kb-aliases OUTPUT/aliases.jsonl]] [--min-confidence P]
[--aggregate max|noisy-or] [--max-evidence 5] [--only-new]`` links the mentions' entities to the KB, merges the mentions of
each (subject, relation, object) and writes the triples, most confident first
(see `relbridge.models.triples`). It prints the counts as one JSON line.

``--kb-aliases`` adds the names that `relbridge run` harvested from
projection (``OUTPUT/aliases.jsonl``, `relbridge.data_specs.aliases`) to the
KB's aliases, so that arguments in the target language link to entities the
KB names in the source language only; ``relbridge extract`` takes the same
flags.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator

from relbridge.data_specs.formats import InputError, open_lines
from relbridge.runtime.flags import comma_list


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "triples",
        help="merge extract records into knowledge-graph triples (linked to a KB, with evidence)",
        description="Links extracted mentions to KB entities and merges the mentions of each "
        "(subject, relation, object) into one triple with a confidence, a mention count and "
        "its most confident evidence.",
    )
    p.add_argument("--input", required=True, nargs="+", help="JSONL records of relbridge extract")
    p.add_argument("--output", required=True, help="JSONL triples, most confident first")
    p.add_argument(
        "--kb",
        help="KB directory (entities + triples): links entities and marks known facts "
        "(default: none, no linking)",
    )
    p.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        help="mentions below this relation confidence are counted as below_threshold and left out "
        "(default: the threshold calibrated beside the model that wrote every record, since "
        "extract already cut there; else 0.5)",
    )
    add_alias_arguments(p)
    p.add_argument(
        "--aggregate",
        choices=("max", "noisy-or"),
        default="max",
        help="a triple's confidence from its mentions' (default: max)",
    )
    p.add_argument(
        "--max-evidence", type=int, default=5, help="mentions kept per triple (default: 5)"
    )
    p.add_argument(
        "--no-type-check",
        dest="check_types",
        action="store_false",
        help="keep mentions whose argument types the KB never has for their relation "
        "(by default they are counted as type_mismatch and left out; needs --kb)",
    )
    p.add_argument(
        "--lang",
        type=comma_list(),
        default=(),
        help="comma-separated languages of the records' text: a mention whose argument is one "
        "of their function words (his, er, elle) names no entity and is counted as "
        "function_word_argument and left out (default: none, no such check)",
    )
    p.add_argument(
        "--only-new",
        action="store_true",
        help="write only triples between linked entities that the KB does not hold (needs --kb; "
        "default: off)",
    )
    p.set_defaults(func=_triples)


def add_alias_arguments(p: argparse.ArgumentParser) -> None:
    """The flags that add harvested aliases to ``--kb`` (here and in ``extract``)."""
    p.add_argument(
        "--kb-aliases",
        nargs="+",
        default=[],
        metavar="FILE",
        help="alias files that relbridge run harvested (OUTPUT/aliases.jsonl): their names "
        "are added to --kb's aliases (default: none)",
    )
    p.add_argument(
        "--kb-aliases-min-count",
        type=int,
        default=1,
        help="use a harvested name only if projected at least this often (default: 1)",
    )
    p.add_argument(
        "--kb-aliases-min-confidence",
        type=float,
        default=0.0,
        help="use a harvested name only if its mean projection confidence is at least this "
        "(default: 0.0)",
    )


def with_harvested_aliases(kb, args: argparse.Namespace):
    """``kb`` plus the names of ``--kb-aliases``, and the languages of those names.

    Returns:
      ``(kb, langs)``: ``kb`` itself and no language without the flag.
    """
    if not args.kb_aliases:
        return kb, set()
    from relbridge.data_specs.aliases import add_aliases, load_alias_files

    if args.kb_aliases_min_count < 1 or not 0 <= args.kb_aliases_min_confidence <= 1:
        raise ValueError(
            "--kb-aliases-min-count must be >= 1, --kb-aliases-min-confidence in [0, 1]"
        )
    extra = load_alias_files(
        args.kb_aliases, args.kb_aliases_min_count, args.kb_aliases_min_confidence
    )
    langs = {lang for entity in extra.values() for lang in entity.aliases}
    return add_aliases(kb, extra), langs


def _records(paths: list[str]) -> Iterator[tuple[str, dict]]:
    for path in paths:
        with open_lines(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield f"{path}:{n}", json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(path, n, f"invalid JSON: {e.msg}") from None


def _records_threshold(paths: list[str]) -> float:
    """`records_threshold` of the one model that wrote every record (records name it), else 0.5."""
    from relbridge.models.thresholds import records_threshold

    # a record that is no extract record counts as one of no model; aggregation names its line
    models = {_model_of(record) for _, record in _records(paths)}
    model = models.pop() if len(models) == 1 else None
    return records_threshold(model if model and os.path.isdir(model) else None)


def _model_of(record) -> str | None:
    model = record.get("model") if isinstance(record, dict) else None
    return model if isinstance(model, str) else None


def _triples(args: argparse.Namespace) -> int:
    from relbridge.data_specs.kb_format import load_kb
    from relbridge.models.triples import TriplesConfig, aggregate_triples
    from relbridge.runtime.files import atomic_file

    if args.only_new and not args.kb:
        raise ValueError("--only-new needs --kb")
    if args.kb_aliases and not args.kb:
        raise ValueError("--kb-aliases needs --kb")
    min_confidence = args.min_confidence
    if min_confidence is None:
        min_confidence = _records_threshold(args.input)
    langs = args.lang
    if langs:  # a mistyped code would turn the check off with a warning, not stop the run
        from relbridge.data_specs.tokenizer import check_language

        for lang in langs:
            check_language(lang, tokenizer=False)
    cfg = TriplesConfig(
        min_confidence, args.aggregate, args.max_evidence, args.check_types, langs
    )
    kb = with_harvested_aliases(load_kb(args.kb), args)[0] if args.kb else None
    triples, counts = aggregate_triples(_records(args.input), cfg, kb)
    if args.only_new:
        triples = [t for t in triples if t["in_kb"] is False]
    with atomic_file(args.output) as f:  # whole or not at all; two runs never share its temp
        f.writelines(json.dumps(t, ensure_ascii=False) + "\n" for t in triples)
    print(json.dumps({**counts, "written": len(triples), "output": args.output}))
    return 0
