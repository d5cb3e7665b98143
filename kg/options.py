"""``relbridge kg build``'s flags and its frozen config (Beam-free, so ``--help`` is quick)."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from relbridge.models.triples import AGGREGATIONS, TriplesConfig
from relbridge.runtime.flags import comma_list

DTYPES = ("float32", "auto", "bfloat16")


@dataclass(frozen=True)
class ReadConfig:
    """Input: text (one sentence or document per line) or JSONL with ``text`` and optional ``id``.

    Attributes:
      input: file paths or globs on any Beam filesystem.
    """

    input: tuple[str, ...]


@dataclass(frozen=True)
class SplitConfig:
    """Sentence splitting (`relbridge.text.sentences`); ``split=False`` keeps each line whole."""

    lang: str = "en"
    split: bool = True


@dataclass(frozen=True)
class MentionConfig:
    """KB mentions (`relbridge.kb.TextMentions`); without ``kb``, extract's word pattern."""

    kb: str | None = None
    lang: str = "en"
    alias_langs: tuple[str, ...] = ()


@dataclass(frozen=True)
class InferenceConfig:
    """The relation extractor under RunInference.

    Attributes:
      model: a trained model directory.
      batch_size: the model's batch size, as ``relbridge extract
        --batch-size`` (8-64 on CPU, 64-256 on a GPU). RunInference hands the
        model `relbridge.models.extract.CHUNK_SIZE` sentences of like length
        at a time, as ``extract`` reads its input in chunks.
      threshold: minimum relation probability of a record (extract's
        ``--threshold``); None: the threshold calibrated beside the model
        (``threshold.json``), else 0, as ``relbridge extract`` chooses it.
        `KgBuildConfig` resolves None to that number, so the run id and the
        saved ``kg_config.json`` name the threshold the records were cut at.
      device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
      dtype: ``auto`` (bf16 where the device has native bf16, float32 elsewhere:
        what ``relbridge extract`` runs at, so the records equal its own),
        ``float32`` or ``bfloat16`` (`relbridge.models.scoring.for_inference`).
      share_model: one model per machine, served to every worker process
        (``auto``: on a GPU, where a copy per process would not fit).
      kb: the KB directory whose ``relation_map.json`` refines the pair pruning
        schema, as for ``relbridge extract --kb`` (`relbridge.models.extract.kb_schema`).
      span_threshold: the tagger's span threshold (None: marginal decoding),
        resolved with ``threshold`` to the one calibrated beside the model, as
        ``relbridge extract`` takes it, so that the run id changes when a
        recalibration changes it. Workers use the resolved config as it is, so
        the records match the run id even if the file changes during the job.
      confidence: what the threshold applies to (`relbridge.models.thresholds.CONFIDENCES`),
        resolved with the thresholds.
      readings: which of the tagger's spans are paired
        (`relbridge.models.thresholds.READINGS`), resolved with the thresholds.
    """

    model: str
    batch_size: int = 16
    threshold: float | None = None
    device: str = "auto"
    dtype: str = "auto"
    share_model: str = "auto"
    kb: str | None = None
    span_threshold: float | None = None
    confidence: str = "relation"
    readings: str = "decoded"

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError("--batch-size must be >= 1")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}")
        if self.share_model not in ("auto", "yes", "no"):
            raise ValueError("--share-model must be auto, yes or no")

    def with_calibrated_threshold(self) -> InferenceConfig:
        """This config resolved as ``relbridge extract`` resolves it: ``threshold`` None,
        ``span_threshold``, ``confidence`` and ``readings`` from ``threshold.json`` beside
        the model.

        `relbridge.models.thresholds.calibration` reads the file (written by
        ``relbridge evaluate --raw-text --calibrate``); a model without one keeps
        every relation above 0 and marginal decoding.
        """
        from relbridge.models.thresholds import calibrated_decoding, calibration

        saved = calibration(self.model)
        threshold = self.threshold
        if threshold is None:
            threshold = float(saved.get("threshold", 0.0))
        span_threshold, confidence, readings = calibrated_decoding(saved)
        return dataclasses.replace(
            self, threshold=threshold, span_threshold=span_threshold, confidence=confidence,
            readings=readings,
        )  # fmt: skip


@dataclass(frozen=True)
class KgBuildConfig:
    """The resolved config of one ``kg build`` run (hashed into its run id)."""

    read: ReadConfig
    output: str
    inference: InferenceConfig
    split: SplitConfig = SplitConfig()
    mentions: MentionConfig = MentionConfig()
    triples: TriplesConfig = TriplesConfig()
    graph: str | None = None
    base_iri: str = "https://example.org/relbridge/"
    num_shards: int = 0
    refresh: bool = False
    overwrite: bool = False
    run_id: str = field(default="", compare=False)

    def __post_init__(self):
        if self.num_shards < 0:
            raise ValueError("--num-shards must be >= 0")
        object.__setattr__(self, "inference", self.inference.with_calibrated_threshold())
        if not self.run_id:
            object.__setattr__(self, "run_id", self.derive_run_id())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def derive_run_id(self) -> str:
        """A hash of the input and every setting but the output and refresh flag: stable per input."""
        settings = {k: v for k, v in self.to_dict().items() if k not in ("output", "refresh", "overwrite", "run_id")}
        for key, before in (("confidence", "relation"), ("readings", "decoded")):
            if settings["inference"][key] == before:
                # what it meant before it was a setting: outputs made then keep their run id
                del settings["inference"][key]
        text = json.dumps(settings, sort_keys=True, default=list)
        return hashlib.sha1(text.encode()).hexdigest()[:10]


def add_build_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, nargs="+", help="text/JSONL files or globs (gs://...)")
    p.add_argument("--output", required=True, help="output directory (any Beam filesystem)")
    p.add_argument("--model", required=True, help="trained model directory")
    p.add_argument("--lang", default="en", help="language of the text: splitter and tokenizer (default: en)")
    p.add_argument("--no-split", dest="split", action="store_false",
                   help="one sentence per line: do not split lines into sentences (default: split)")  # fmt: skip
    p.add_argument("--kb", help="KB directory: aliases are mentions, entities are linked (default: none)")
    p.add_argument("--kb-alias-langs", type=comma_list(), default=(),
                   help="comma-separated alias languages (default: all in the KB)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=16, help="sentences per inference batch (default: 16)")
    p.add_argument("--threshold", type=float, default=None,
                   help="minimum relation probability of a record (default: the threshold calibrated "
                   "beside the model in threshold.json, else 0, as for relbridge extract)")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--dtype", choices=DTYPES, default="auto",
                   help="inference dtype: auto is bf16 where the device has native bf16, as for "
                        "relbridge extract (default: auto)")
    p.add_argument("--share-model", choices=("auto", "yes", "no"), default="auto",
                   help="one model per worker process, shared by its threads (default: auto)")  # fmt: skip
    p.add_argument("--min-confidence", type=float, default=None,
                   help="mentions below this confidence make no triple (default: the relation "
                        "threshold the records were extracted at, else 0.5)")  # fmt: skip
    p.add_argument("--aggregate", choices=AGGREGATIONS, default="max",
                   help="a triple's confidence from its mentions' (default: max)")  # fmt: skip
    p.add_argument("--max-evidence", type=int, default=5, help="mentions kept per triple (default: 5)")
    p.add_argument("--graph", help="named graph IRI (default: BASE/graph/RUN_ID)")
    p.add_argument("--base-iri", default="https://example.org/relbridge/",
                   help="IRI base of non-Wikidata ids (default: https://example.org/relbridge/)")  # fmt: skip
    p.add_argument("--num-shards", type=int, default=0, help="files per output (default: 0, the runner decides)")
    p.add_argument("--refresh", action="store_true",
                   help="process only input lines that earlier runs into --output did not (default: off)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true",
                   help="replace an --output that holds another run (other input or settings; default: off)")  # fmt: skip


def config_from_args(args: argparse.Namespace) -> KgBuildConfig:
    from relbridge.models.thresholds import records_threshold

    langs = args.kb_alias_langs
    if langs and not args.kb:
        raise ValueError("--kb-alias-langs only acts with --kb")
    inference = InferenceConfig(
        args.model, args.batch_size, args.threshold, args.device, args.dtype, args.share_model,
        args.kb,
    )
    min_confidence = args.min_confidence
    if min_confidence is None:  # a model with neither threshold keeps 0.5, and its old run id
        min_confidence = records_threshold(args.model, args.threshold)
    return KgBuildConfig(
        read=ReadConfig(tuple(args.input)),
        output=args.output.rstrip("/"),
        inference=inference,
        split=SplitConfig(args.lang, args.split),
        mentions=MentionConfig(args.kb, args.lang, langs),
        triples=TriplesConfig(
            min_confidence, args.aggregate, args.max_evidence, langs=(args.lang,)
        ),
        graph=args.graph,
        base_iri=args.base_iri,
        num_shards=args.num_shards,
        refresh=args.refresh,
        overwrite=args.overwrite,
    )
