"""The pipeline's own flags, parsed apart from Beam's `PipelineOptions`.

`parse_args(argv)` returns our namespace and the leftover flags, which go to
Beam unchanged (``--runner``, ``--direct_running_mode``, ``--project``, ...).
`PipelineConfig` groups one frozen config per stage; it is hashed into the run
id and saved as ``pipeline_config.json`` beside the shards.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

from relbridge.alignment.aligner import DEFAULT_PRESET, STATISTICAL, AlignConfig, aligner_config
from relbridge.alignment.sentence_embed import SentenceEmbedConfig
from relbridge.pipeline.align import with_fallback
from relbridge.pipeline.align_sentences import AlignSentencesConfig
from relbridge.pipeline.ingest import IngestConfig
from relbridge.pipeline.label import LabelConfig
from relbridge.pipeline.tokenize import TokenizeConfig
from relbridge.pipeline.write_shards import WriteConfig
from relbridge.projection.projection import ProjectConfig


@dataclass(frozen=True)
class PipelineConfig:
    """All stage configs of one run."""

    ingest: IngestConfig
    tokenize: TokenizeConfig
    label: LabelConfig
    align: AlignConfig
    project: ProjectConfig
    write: WriteConfig
    skip_existing: bool = False
    overwrite: bool = False
    documents: AlignSentencesConfig | None = None  # set: sentence-align these, no corpus

    def __post_init__(self):
        # The projection's fallback links are computed by the aligner: the align
        # config records that, so what is saved and hashed is what the workers run.
        object.__setattr__(self, "align", with_fallback(self.align, self.project.fallback_method))
        if self.skip_existing and self.overwrite:
            raise ValueError(
                "--skip-existing keeps earlier shards and --overwrite replaces them: pass one"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self, input_files: list[str]) -> str:
        """A short hash of the config (minus the run id) and the input files."""
        body = self.to_dict()
        body["write"].pop("run_id")
        body["write"].pop("output")  # where, not what: one run gives the same files anywhere
        body.pop("overwrite")  # how to treat an old output, not what this run writes
        for how in ("num_threads", "compile"):  # how to compute, not what: same links
            body["align"].pop(how)
        blob = json.dumps({"config": body, "inputs": input_files}, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


_IO_HELP = {
    "corpus": "parallel corpus: a .tsv (src<TAB>tgt or id<TAB>src<TAB>tgt) "
    "or .jsonl ({src, tgt, id?}) file or glob, or a prefix P of two line-aligned text files "
    "P.<src-lang> and P.<tgt-lang>, or those two files as SRC_FILE,TGT_FILE; local, gs:// "
    "or any Beam filesystem",
    "corpus_format": "corpus format (auto: by file name; anything not .tsv/.jsonl is 'text')",
    "unescape": "decode HTML/XML character references (&apos; &amp; &#124;) in both sentences, "
    "as Moses-tokenised corpora escape them (default: off)",
    "corpus_name": "provenance name, part of every pair id (none: the file name)",
    "src_lang": "source language code, e.g. en (KB aliases are matched here)",
    "tgt_lang": "target language code, e.g. de (labels are projected here)",
    "kb": "KB directory with entities.{tsv,jsonl} (id, type, aliases per "
    "language) and triples.{tsv,jsonl} (subject, relation, object)",
    "output": "output directory for shards, dead letters and stats",
    "num_shards": "Parquet files to write (0: the runner decides)",
    "case_sensitive": "match KB aliases ignoring case",
    "max_mentions": "mentions kept per sentence",
    "skip_function_word_aliases": "also match one-word aliases that are function words of the "
    "source language (it, one, his); by default they are skipped",
    "max_words": "longest sentence accepted, in words",
    "min_confidence": "drop projected target mentions less confident than this, in [0, 1] "
    "(higher: fewer, cleaner target labels)",
}
_RUN_HELP = {
    "skip_existing": "refresh mode: skip pairs already in OUTPUT/shards and input lines already "
    "in OUTPUT/dead_letter (with --documents: documents whose id is already there, before they "
    "are embedded), and add new shards beside",
    "overwrite": "replace the shards and dead letters of earlier runs in OUTPUT (other input or "
    "settings); without it such a run stops before writing anything",
}
_ALIGN_HELP = {
    "model": "encoder: local path or Hugging Face name; a name falls back to the bundled "
    "multilingual-e5-small when it cannot be loaded offline, a missing path is an error",
    "num_threads": "torch CPU threads per worker process (the preset's: torch's own, or with "
    "the DirectRunner's --direct_running_mode multi_processing, cores / --direct_num_workers)",
    "compile": "torch.compile the encoder in each worker (~30 s once; meant for CUDA, no gain "
    "on CPU)",
    "statistical": "eflomal, trained once on the whole corpus: off, only (instead of neural "
    "links) or a rule combining neural and eflomal links",
}
_ALIGN_FIELDS = ("method", "layer", "batch_size", "num_threads", "compile", "statistical")


def _flag_sets() -> dict[str, list]:
    """The pipeline's flags, one list per config they fill (`relbridge.runtime.flags`)."""
    from relbridge.alignment.statistical import EflomalConfig
    from relbridge.runtime.flags import field_flags

    return {
        "ingest": field_flags(IngestConfig, help=_IO_HELP),
        "label": field_flags(
            LabelConfig, ["kb", "case_sensitive", "max_mentions", "skip_function_word_aliases"],
            invert={"case_sensitive": "case_insensitive",
                    "skip_function_word_aliases": "match_function_word_aliases"},
            help=_IO_HELP,
        ),
        "tokenize": field_flags(TokenizeConfig, ["max_words"], help=_IO_HELP),
        "write": field_flags(WriteConfig, ["output", "num_shards"], help=_IO_HELP),
        "run": field_flags(PipelineConfig, ["skip_existing", "overwrite"], help=_RUN_HELP),
        "project": field_flags(
            ProjectConfig, ["min_confidence"], rename={"min_confidence": "min_projection_confidence"},
            help=_IO_HELP,
        ),
        "model": field_flags(AlignConfig, ["model"], help=_ALIGN_HELP),
        "align": field_flags(
            AlignConfig, _ALIGN_FIELDS, prefix="align-", rename={"num_threads": "threads"},
            help=_ALIGN_HELP,
        ),
        "eflomal": field_flags(
            EflomalConfig, ["extra_corpus"], prefix="align-statistical-",
            help={"extra_corpus": "more parallel text for eflomal to train on: a pre-tokenised "
                  "'src ||| tgt' file of the same language pair and direction, tokenised like "
                  "the corpus"},
        ),
    }  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the pipeline's flags (used by `relbridge run`), generated from the stage configs."""
    from relbridge.runtime.flags import add_flags

    flags = _flag_sets()
    io = parser.add_argument_group("inputs and outputs")
    inputs = io.add_mutually_exclusive_group(required=True)
    inputs.add_argument(
        "--corpus",
        help="parallel corpus: a .tsv (src<TAB>tgt or id<TAB>src<TAB>tgt) "
        "or .jsonl ({src, tgt, id?}) file or glob, or a prefix P of two line-aligned text files "
        "P.<src-lang> and P.<tgt-lang>, or those two files as SRC_FILE,TGT_FILE; local, gs:// "
        "or any Beam filesystem (default: none; give --corpus or --documents)",
    )
    inputs.add_argument(
        "--documents",
        help="document pairs to sentence-align first: a manifest TSV (doc_id<TAB>src_path<TAB>"
        "tgt_path, paths relative to it or on any Beam filesystem) or .jsonl ({src, tgt, id?}) "
        "(default: none; give --corpus or --documents)",
    )
    io.add_argument(
        "--presplit",
        action="store_true",
        help="with --documents: the documents hold one sentence per line already (default: off)",
    )
    io.add_argument(
        "--min-sentence-score",
        type=float,
        default=AlignSentencesConfig.min_score,
        help="with --documents: sentence-alignment units scoring below this go to the dead "
        f"letters (default {AlignSentencesConfig.min_score})",
    )
    io.add_argument(
        "--corpus-format",
        default="auto",
        choices=["auto", "tsv", "jsonl", "text"],
        help="corpus format (default: auto, by file name; anything not .tsv/.jsonl is 'text')",
    )
    io.add_argument(
        "--unescape",
        action="store_true",
        help="decode HTML/XML character references (&apos; &amp; &#124;) in both sentences, "
        "as Moses-tokenised corpora escape them (default: off)",
    )
    io.add_argument(
        "--corpus-name",
        default="",
        help="provenance name, part of every pair id (default: file name)",
    )
    io.add_argument(
        "--kb",
        required=True,
        help="KB directory with entities.{tsv,jsonl}[.gz] (id, type, aliases per "
        "language) and triples.{tsv,jsonl}[.gz] (subject, relation, object), or an index "
        "built from one by `relbridge kb build`; local or gs://. A directory's index is built "
        "once per KB version into --kb-index-cache",
    )
    io.add_argument(
        "--kb-index-cache",
        default="",
        help="folder for the KB index built from a --kb directory (default: $RELBRIDGE_KB_CACHE "
        "or ~/.cache/relbridge/kb); a gs:// folder when workers run elsewhere",
    )
    io.add_argument(
        "--src-lang",
        required=True,
        help="source language code, e.g. en (KB aliases are matched here)",
    )
    io.add_argument(
        "--tgt-lang",
        required=True,
        help="target language code, e.g. de (labels are projected here)",
    )
    io.add_argument(
        "--output", required=True, help="output directory for shards, dead letters and stats"
    )
    io.add_argument(
        "--num-shards", type=int, default=0, help="Parquet files to write (default: 0, the runner decides)"
    )
    io.add_argument(
        "--skip-existing",
        action="store_true",
        help="refresh mode: skip pairs already in OUTPUT/shards and input lines already in "
        "OUTPUT/dead_letter, and add new shards beside (default: off)",
    )
    io.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the shards and dead letters of earlier runs in OUTPUT (other input or settings); "
        "without it such a run stops before writing anything (default: off)",
    )
    lab = parser.add_argument_group("distant supervision")
    add_flags(lab, [f for f in flags["label"] if f.field != "kb"] + flags["tokenize"])
    add_flags(parser.add_argument_group("label projection"), flags["project"])
    al = parser.add_argument_group("word alignment")
    add_flags(al, flags["model"], given_only=True, default_text="the preset's")
    al.add_argument(
        "--aligner",
        default=DEFAULT_PRESET,
        help=f"registered aligner preset; the flags below override it (default: {DEFAULT_PRESET})",
    )
    add_flags(
        al, flags["align"] + flags["eflomal"], given_only=True, default_text="the preset's",
        choices={"statistical": STATISTICAL},
    )  # fmt: skip


def config_from_args(args: argparse.Namespace, beam_args: Sequence[str] = ()) -> PipelineConfig:
    """Builds the stage configs from parsed flags (each validates itself).

    ``beam_args`` (the flags that go to Beam) only set the default of
    ``--align-threads``, see `threads_per_worker`.
    """
    check_beam_args(beam_args)
    align = align_config_from_args(args)
    if align.num_threads is None:
        align = dataclasses.replace(align, num_threads=threads_per_worker(beam_args))
    documents = None
    if args.documents:
        documents = AlignSentencesConfig(
            args.documents,
            args.src_lang,
            args.tgt_lang,
            args.corpus_name,
            presplit=args.presplit,
            min_score=args.min_sentence_score,
            embed=SentenceEmbedConfig(model=args.model),
        )
    cfg = PipelineConfig(
        documents=documents,
        ingest=IngestConfig(
            args.corpus or "",
            args.src_lang,
            args.tgt_lang,
            args.corpus_format,
            args.corpus_name,
            unescape=args.unescape,
        ),
        tokenize=TokenizeConfig(args.src_lang, args.tgt_lang, max_words=args.max_words),
        label=LabelConfig(
            args.kb,
            args.src_lang,
            not args.case_insensitive,
            args.max_mentions,
            skip_function_word_aliases=not args.match_function_word_aliases,
            index_cache=args.kb_index_cache,
        ),
        align=align,
        project=ProjectConfig(min_confidence=args.min_projection_confidence),
        write=WriteConfig(args.output, num_shards=args.num_shards),
        skip_existing=args.skip_existing,
        overwrite=args.overwrite,
    )
    run_id = cfg.fingerprint(documents.input_files() if documents else cfg.ingest.input_files())
    return dataclasses.replace(cfg, write=dataclasses.replace(cfg.write, run_id=run_id))


def check_beam_args(beam_args: Sequence[str]) -> None:
    """Refuses flags that neither we nor Beam know (``--runnr DirectRunner``).

    Beam only logs "Discarding unparseable args" and runs on with its
    defaults, so a typo in ``--runner`` ran the whole corpus locally.

    Raises:
      ValueError: naming each unknown flag, with the closest Beam flag.
    """
    import difflib

    from apache_beam.options.pipeline_options import PipelineOptions

    parsers = []
    PipelineOptions(list(beam_args)).get_all_options(add_extra_args_fn=parsers.append)
    (parser,) = parsers
    _, unknown = parser.parse_known_args(list(beam_args))
    if not unknown:
        return
    known = [flag for action in parser._actions for flag in action.option_strings]
    problems = []
    for arg in unknown:
        close = difflib.get_close_matches(arg.split("=", 1)[0], known, n=1)
        problems.append(arg + (f" (did you mean {close[0]}?)" if close else ""))
    raise ValueError(f"unknown flag(s), neither relbridge's nor Beam's: {', '.join(problems)}")


def threads_per_worker(beam_args: Sequence[str]) -> int | None:
    """torch threads per worker process, where the runner starts several per machine.

    Each process would otherwise start one torch thread per core, so N
    processes on N cores ran N x N threads: on 2 cores, two DirectRunner
    workers aligned ~21 pairs/s together against ~56 for one process.

    * DirectRunner, ``--direct_running_mode multi_processing``: cores / workers.
    * DataflowRunner: 1, since Dataflow starts one Python SDK process per vCPU
      (unless ``--experiments no_use_multiple_sdk_containers``, then torch's
      own setting). Not measured here: Dataflow is out of reach.
    * Otherwise ``None``: torch's own setting.
    """
    from apache_beam.options.pipeline_options import (
        DebugOptions,
        DirectOptions,
        PipelineOptions,
        StandardOptions,
    )

    options = PipelineOptions(list(beam_args))
    if (options.view_as(StandardOptions).runner or "").endswith("DataflowRunner"):
        experiments = options.view_as(DebugOptions).experiments or []
        return None if "no_use_multiple_sdk_containers" in experiments else 1
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode != "multi_processing":
        return None
    cores = os.cpu_count() or 1
    workers = direct.direct_num_workers or cores  # 0 = one per core
    return max(1, cores // workers)


def align_config_from_args(args: argparse.Namespace) -> AlignConfig:
    """The ``--aligner`` preset with the ``--align-*`` flags that were given."""
    from relbridge.runtime.flags import given

    flags = _flag_sets()
    cfg = aligner_config(args.aligner, **given(args, flags["model"] + flags["align"]))
    eflomal = given(args, flags["eflomal"])
    if eflomal:
        cfg = dataclasses.replace(cfg, eflomal=dataclasses.replace(cfg.eflomal, **eflomal))
    return cfg
