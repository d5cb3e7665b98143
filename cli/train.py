"""`relbridge train | evaluate | extract | benchmark relx`: the model commands.

* ``train --shards DIR --output DIR [flags]`` or ``train --config run.json``:
  every `TrainConfig` field is a flag (``--dev-fraction 0.1``, ``--no-freeze-embeddings``);
  flags override the JSON file.
* ``evaluate --model DIR --data PATH [--format shards|relx] [--lang xx] [--ids FILE]
  [--pr-curve curve.png]`` prints the metrics as JSON.
* ``extract --model DIR --input sentences.txt --output triples.jsonl``.
* ``benchmark relx --kbp37 DIR --relx DIR --output DIR [--preset auto|cpu|full]``:
  KBP37 -> RELX en/de/fr; delivers the levitated student ``DIR/fast/model`` unless
  ``--no-fast-student`` (see `relbridge.models.benchmark` for the presets).
"""

from __future__ import annotations

import argparse
import json
import os

from relbridge.cli.triples import add_alias_arguments, with_harvested_aliases
from relbridge.data_specs.formats import open_lines
from relbridge.models.candidates import DEFAULT_MAX_DISTANCE
from relbridge.runtime.flags import at_least, comma_list

BENCHMARK_OUTPUT = "out/benchmark_relx"


def _config_flags(skip: tuple[str, ...] = ()) -> list:
    """One flag per flat TrainConfig setting, group by group; the dest is the flat name."""
    from relbridge.models.model_config import ModelConfig
    from relbridge.models.train_config import (
        MODEL_HELP,
        MODEL_SETTINGS,
        DataConfig,
        OptimConfig,
        RunConfig,
        default_model,
    )
    from relbridge.runtime.flags import field_flags

    model_fields = {field: flat for flat, field in MODEL_SETTINGS.items()}
    flags = field_flags(DataConfig) + field_flags(
        ModelConfig, list(model_fields), rename={"encoder": "model"}, defaults=default_model(),
        help={MODEL_SETTINGS[flat]: text for flat, text in MODEL_HELP.items()},
    ) + field_flags(OptimConfig) + field_flags(RunConfig)  # fmt: skip
    return [f for f in flags if f.dest not in skip]


def _add_config_flags(
    parser: argparse.ArgumentParser, skip: tuple[str, ...] = (), defaults: dict | None = None
) -> None:
    """The TrainConfig flags, default None so that only given flags override (a JSON file).

    Each help names the setting's default (``defaults`` replaces it where the
    command has its own, as ``benchmark relx`` has for ``--output``).
    """
    from relbridge.runtime.flags import add_flags

    defaults = {"output": "required, here or in --config", **(defaults or {})}
    group = parser.add_argument_group("training settings (TrainConfig)")
    for f in _config_flags(skip):
        add_flags(group, [f], given_only=True, default_text=defaults.get(f.dest))


def _given_settings(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict:
    """Flat name -> value of the TrainConfig flags given."""
    from relbridge.runtime.flags import given

    flags = _config_flags(skip)
    by_field = {f.field: f.dest for f in flags}
    return {by_field[k]: v for k, v in given(args, flags).items()}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the relation extractor on shards (or KBP37/RELX files)",
        description="Trains the multi-task relation extractor; the best model lands in OUTPUT/model.",
    )
    p.add_argument(
        "--config", help="a JSON file of TrainConfig fields; flags override it (default: none)"
    )
    _add_config_flags(p)
    p.set_defaults(func=_train)

    p = subparsers.add_parser("evaluate", help="score a trained model; prints JSON")
    p.add_argument(
        "--model", required=True, help="model directory (OUTPUT/model of a training run)"
    )
    p.add_argument(
        "--data", required=True, nargs="+", help="shard directory/glob or KBP37/RELX file(s)"
    )
    p.add_argument(
        "--format",
        default="auto",
        choices=("auto", "shards", "relx"),
        help="data format (default: auto)",
    )
    p.add_argument(
        "--lang",
        help="language of RELX files, or the language kept from shards "
        "(default: RELX files: from the _xx.txt name; shards: every language)",
    )
    p.add_argument(
        "--ids",
        help="keep only these sentence ids: one per line, or a JSON list / object (default: all)",
    )
    p.add_argument(
        "--ids-key",
        default="test",
        help="key of the id list when --ids is a JSON object (default: test)",
    )
    p.add_argument(
        "--batch-size", type=at_least(1), default=32, help="inference batch size (default: 32)"
    )
    p.add_argument(
        "--pr-curve",
        metavar="PNG",
        help="also draw the held-out PR curves (all, and per language) into PNG (default: none)",
    )
    p.add_argument(
        "--report",
        metavar="HTML",
        help="also write a run report of this evaluation (figures and tables) to HTML "
        "(default: none)",
    )
    p.add_argument(
        "--raw-text",
        action="store_true",
        help="score KBP37/RELX files end to end: markers removed, the model (and --kb's aliases) "
        "find the entities; relx_f1, mention/pair/triple recall, precision lower bound "
        "(see relbridge.models.raw_text; default: off)",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="with --raw-text: choose the relation threshold on these files (a dev set, never "
        "the test set) and save it beside the model, where extract finds it (default: off)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="with --raw-text: relation threshold (default: the calibrated one, else 0)",
    )
    _add_kb_flags(p)
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser("extract", help="extract relation triples from raw sentences")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument(
        "--input",
        required=True,
        help="one sentence per line (plain, <e1>/<e2>-marked, or JSON with 'text' and "
        "optional 'id'); blank lines are skipped",
    )
    p.add_argument(
        "--output",
        required=True,
        help="JSONL records: subject, relation, object, confidence, spans, and provenance "
        "(source_file, line, id when given, model)",
    )
    p.add_argument(
        "--batch-size", type=at_least(1), default=16, help="inference batch size (default: 16)"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="minimum relation probability for untagged input (default: the threshold "
        "calibrated on dev beside the model, else 0)",
    )
    p.add_argument(
        "--kb",
        help="KB directory or index (relbridge kb build --profile LANG:*): its aliases found in "
        "untagged sentences are mentions beside the tagger's, so that the records' arguments link "
        "to KB entities (needs --lang). A directory's index is built once into $RELBRIDGE_KB_CACHE "
        "(default: none, the tagger alone)",
    )
    p.add_argument(
        "--lang",
        help="language of the input sentences, e.g. de: with --kb, untagged sentences are split "
        "into words by this language's tokenizer (the pipeline's), not the default word pattern "
        "(default: none)",
    )
    p.add_argument(
        "--kb-alias-langs",
        type=comma_list(),
        help="comma-separated languages whose KB aliases to match (default: all in the KB; "
        "the languages of --kb-aliases are added)",
    )
    add_alias_arguments(p)
    p.add_argument(
        "--exact",
        action="store_true",
        help="score every candidate pair in its own encoder pass (the reference path; "
        "default for a model trained with levitated markers: the pairs' markers read the "
        "tagging pass's cached text; an inline-marker model always takes one pass per pair)",
    )
    p.add_argument(
        "--max-pair-distance",
        type=int,
        default=DEFAULT_MAX_DISTANCE,
        help=f"most words between the two mentions of a candidate pair (default: {DEFAULT_MAX_DISTANCE})",
    )
    p.add_argument(
        "--no-type-pruning",
        dest="type_pruning",
        action="store_false",
        help="score pairs whose entity types no relation admits (default: pruned by the relation "
        "names' subject types and the KB's relation_map.json)",
    )
    p.set_defaults(func=_extract)

    bench = subparsers.add_parser("benchmark", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    p = bench_sub.add_parser(
        "relx",
        help="train on KBP37, evaluate zero-shot on RELX en/de/fr (RELX metric)",
        description="Trains on KBP37 train (early stopping on KBP37 dev) and evaluates on RELX en/de/fr.",
    )
    p.add_argument(
        "--kbp37", required=True, help="directory with KBP37 train.txt and dev.txt (read in place)"
    )
    p.add_argument("--relx", required=True, help="directory with RELX_{en,de,fr}.txt")
    p.add_argument(
        "--languages",
        nargs="+",
        default=["en", "de", "fr"],
        help="RELX languages to score (default: en de fr)",
    )
    p.add_argument(
        "--preset",
        default="auto",
        choices=("auto", "cpu", "full"),
        help="training preset: full (whole encoder, 3 epochs, for a GPU), cpu (top 10 layers "
        "with layer-wise lr decay and a weight average, 3 epochs: about 45 min on 2 CPU cores); "
        "auto: full with CUDA, else cpu. Flags override; see relbridge.models.benchmark "
        "(default: auto)",
    )
    p.add_argument(
        "--kbp37-test",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also score KBP37 test minus RELX's sentences (default: with the full preset)",
    )
    p.add_argument(
        "--raw-text",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="calibrate the raw-text threshold on KBP37 dev and score RELX without markers "
        "(benchmark.json raw_text.<lang>; default: on)",
    )
    p.add_argument(
        "--raw-text-sentences",
        type=at_least(0),
        default=0,
        help="score raw text on this many sentences of each RELX file (default: 0, all)",
    )
    p.add_argument(
        "--calibration-sentences",
        type=at_least(0),
        default=0,
        help="choose the raw-text threshold on this many KBP37 dev sentences (default: 0, all)",
    )
    p.add_argument(
        "--fast-student",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="then train a levitated-marker model distilled from the inline one (one more "
        "epoch, OUTPUT/fast/model: one encoder pass per sentence in extract) and deliver it: "
        "benchmark.json scores it, the inline teacher's marked scores under teacher "
        "(default: on; --no-fast-student delivers the inline OUTPUT/model)",
    )
    _add_kb_flags(p)
    _add_config_flags(
        p, skip=("shards", "relx_train", "dev"), defaults={"output": BENCHMARK_OUTPUT}
    )
    p.set_defaults(func=_benchmark_relx)


def _train(args: argparse.Namespace) -> int:
    from relbridge.models.trainer import TrainConfig, train

    from relbridge.runtime.loading import read_json_object

    settings = read_json_object(args.config) if args.config else {}
    settings.update(_given_settings(args))
    cfg = TrainConfig.from_json(settings)
    stats = train(cfg)
    summary = {k: v for k, v in stats.items() if k != "history"}
    summary["report"] = _report(cfg.run.output, "relbridge train", training=cfg.run.output)
    print(json.dumps(summary, indent=2))
    return 0


def _report(output: str, title: str, **sections) -> str | None:
    """Writes OUTPUT/report.html (see `relbridge.report`); None when it could not be."""
    import os

    from relbridge.report import REPORT, try_write_report

    return try_write_report(os.path.join(output, REPORT), title=title, **sections)


def _add_kb_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kb",
        help="KB directory or index: its aliases found in untagged sentences are mentions beside "
        "the tagger's, so that the records' arguments link to KB entities (default: none)",
    )
    p.add_argument(
        "--kb-alias-langs",
        type=comma_list(),
        help="comma-separated languages whose KB aliases to match (default: all in the KB)",
    )


def _mention_finders(args: argparse.Namespace):
    """``lang -> KB mention finder`` for ``--kb`` (the KB read once), or None without it."""
    if not args.kb:
        if args.kb_alias_langs:
            raise ValueError("--kb-alias-langs only acts with --kb")  # same wording as --lang
        return None
    from relbridge.data_specs.tokenizer import check_language
    from relbridge.kb import TextMentions

    kb = args.kb  # a KB directory's index is built once, then each finder opens it
    langs = list(args.kb_alias_langs or ())

    def finder(lang: str):
        check_language(lang)
        return TextMentions(kb, lang, langs or None)

    return finder


def _read_ids(path: str, key: str) -> set[str]:
    """The ids of ``--ids``: a JSON list, a JSON object's ``key`` list, else one id per line."""
    with open_lines(path) as f:
        lines = list(f)
    try:
        data = json.loads("".join(lines))
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, list | dict):  # a lone id (``17647``) is JSON too, but a line
        return {line.strip() for line in lines if line.strip()}
    if isinstance(data, dict):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{path}: no {key!r} list of ids (--ids-key; keys: {list(data)})")
        data = data[key]
    return {str(x) for x in data}


def _evaluate(args: argparse.Namespace) -> int:
    from relbridge.models.evaluate import evaluate, without_diagnostics

    ids = _read_ids(args.ids, args.ids_key) if args.ids else None
    if args.raw_text and (args.pr_curve or args.report):
        raise ValueError("--pr-curve and --report only act without --raw-text")
    folder = os.path.dirname(os.path.abspath(args.pr_curve or "."))
    if args.pr_curve and (os.path.isdir(args.pr_curve) or not os.path.isdir(folder)):
        raise ValueError(f"{args.pr_curve}: not a file in an existing folder (--pr-curve)")
    if args.raw_text:
        print(json.dumps(_evaluate_raw_text(args, ids), indent=2))
        return 0
    if args.calibrate or args.kb or args.threshold is not None:
        raise ValueError("--calibrate, --kb and --threshold only act with --raw-text")
    result = evaluate(
        args.model,
        args.data,
        data_format=args.format,
        lang=args.lang,
        ids=ids,
        batch_size=args.batch_size,
        details=bool(args.pr_curve or args.report),
    )
    if args.pr_curve:
        from relbridge.report.render import pr_figure_of

        with open(args.pr_curve, "wb") as f:
            f.write(pr_figure_of(result, f"Held-out precision/recall: {args.model}"))
    if args.report:
        from relbridge.report import write_report

        write_report(
            args.report, title=f"relbridge evaluate {args.model}", evaluations={"data": result}
        )
    printed = without_diagnostics(result)
    if args.report:
        printed["report"] = args.report
    print(json.dumps(printed, indent=2))
    return 0


def _evaluate_raw_text(args: argparse.Namespace, ids: set[str] | None) -> dict:
    """``evaluate --raw-text``: per file, the raw-text scores (or, with --calibrate, the threshold)."""
    from relbridge.data_specs.languages import language_in_name
    from relbridge.models.raw_text import calibrate, evaluate_raw_text

    if args.format == "shards":
        raise ValueError("--raw-text scores KBP37/RELX files, not shards")
    if args.calibrate and len(args.data) != 1:
        raise ValueError("--calibrate chooses the threshold on one dev file")
    finders = _mention_finders(args)
    out: dict = {"model": args.model, "kb": args.kb, "raw_text": {}}
    for path in args.data:
        lang = args.lang or language_in_name(path) or "en"
        mentions_of = finders(lang) if finders else None
        if args.calibrate:
            out["calibration"] = calibrate(
                args.model, path, ids, mentions_of, batch_size=args.batch_size
            )
            continue
        out["raw_text"][path] = evaluate_raw_text(
            args.model, path, ids, mentions_of, args.threshold, args.batch_size
        )
    return out


def _extract(args: argparse.Namespace) -> int:
    if os.path.exists(args.output) and os.path.samefile(args.input, args.output):
        raise ValueError(f"{args.output}: --output is the --input file; it would be replaced")
    from relbridge.runtime.files import OutputLock

    with OutputLock(args.output, f"extract (pid {os.getpid()})"):  # one OUTPUT.partial writer
        return _extract_locked(args)


def _extract_locked(args: argparse.Namespace) -> int:
    from relbridge.models.candidates import CandidateConfig
    from relbridge.models.extract import iter_extract_file
    from relbridge.models.scoring import ScoringConfig

    mentions_of = None
    if args.kb:
        if not args.lang:
            raise ValueError("--kb needs --lang, the language of the input sentences")
        from relbridge.data_specs.tokenizer import check_language
        from relbridge.kb import TextMentions

        # TextMentions builds the tokenizer next, in this process: no second build to check it
        check_language(args.lang, tokenizer=False)
        langs = list(args.kb_alias_langs or ())
        if args.kb_aliases:  # harvested names join the KB in memory; an index holds its own only
            from relbridge.data_specs.kb_format import load_kb

            kb, harvested = with_harvested_aliases(load_kb(args.kb), args)
            langs = sorted({*langs, *harvested}) if langs else []
            mentions_of = TextMentions(kb, args.lang, langs or None)
        else:
            mentions_of = TextMentions(args.kb, args.lang, langs or None)
    elif args.lang or args.kb_alias_langs or args.kb_aliases:
        raise ValueError("--lang, --kb-alias-langs and --kb-aliases only act with --kb")
    stats: dict[str, int] = {}
    records = iter_extract_file(
        args.model,
        args.input,
        progress=True,
        stats=stats,
        batch_size=args.batch_size,
        threshold=args.threshold,
        mentions_of=mentions_of,
        scoring=ScoringConfig(exact=args.exact),
        candidates=CandidateConfig(args.max_pair_distance, args.type_pruning),
        kb_dir=args.kb,
    )
    written = 0
    partial = f"{args.output}.partial"  # records land as they come; the name only when complete
    try:
        with open(partial, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
    except BaseException:  # bad input, a missing model, Ctrl-C: no half-written file stays behind
        if os.path.isfile(partial):
            os.unlink(partial)
        raise
    os.replace(partial, args.output)
    summary = {**stats, "records": written, "output": args.output}
    if mentions_of is not None:
        summary["kb_mentions"] = mentions_of.found
    print(json.dumps(summary))
    return 0


def _benchmark_relx(args: argparse.Namespace) -> int:
    from relbridge.models.benchmark import run_relx_benchmark

    settings = _given_settings(args, skip=("shards", "relx_train", "dev"))
    output = settings.pop("output", None) or BENCHMARK_OUTPUT
    summary = run_relx_benchmark(
        args.kbp37,
        args.relx,
        output,
        tuple(args.languages),
        preset=args.preset,
        kbp37_test=args.kbp37_test,
        mention_finders=_mention_finders(args),
        raw_text=args.raw_text,
        raw_text_sentences=args.raw_text_sentences,
        calibration_sentences=args.calibration_sentences,
        fast_student=args.fast_student,
        **settings,
    )
    keys = (
        "model_dir", "marker_mode", "relx_f1", "raw_text", "kbp37_relx_f1", "teacher",
        "relx_f1_mean_below_teacher", "published_mbert", "preset", "train_s", "wall_s",
    )  # fmt: skip
    printed = {k: summary[k] for k in keys if k in summary}
    printed["report"] = _report(
        output,
        "relbridge benchmark relx",
        training=os.path.dirname(summary["model_dir"]),
        evaluations={
            f"RELX {lang}" if lang in args.languages else lang: result
            for lang, result in summary["scores"].items()
        },
    )
    print(json.dumps(printed, indent=2))
    return 0
