"""ExtractRelations: RunInference with the relation extractor, (Sentence, PreparedSentence) -> records.

`ExtractorModelHandler` loads the model once per process (or once per machine,
shared by every worker process, with ``share_model``: the default on a GPU), on
CUDA when present, with bf16 autocast where asked (``dtype``). Batches are
bucketed by sentence length (`BatchElements`' ``length_fn``), so padding stays
small. Each batch runs `relbridge.models.extract.extract_prepared`, the code of
``relbridge extract``: the tagging head finds the mentions, every pair is scored
in both directions, and the records are extract's, plus their provenance
(``source_file``, ``line``, ``id`` for JSONL input, ``model``, and
``sentence_in_line``). A batch that fails becomes dead letters (one per
sentence, with the error), through `RunInference.with_exception_handling`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from relbridge.kg.options import InferenceConfig
from relbridge.models.extract import CHUNK_SIZE
from relbridge.pipeline.dead_letter import reject

logger = logging.getLogger(__name__)

PRECISION = {"auto": "auto", "float32": "fp32", "bfloat16": "bf16"}
"""``--dtype`` as the scorer's precision (`relbridge.models.scoring.ScoringConfig`)."""

LENGTH_BUCKETS = [8, 16, 32, 64, 128]
"""Word-count boundaries of the batching buckets."""


def sentence_length(element) -> int:
    """Words of a (Sentence, PreparedSentence) element: its batching bucket."""
    return len(element[1].words)


class Extractor:
    """The loaded model behind one method, so that it can be served to other processes.

    (`share_model` hands worker processes a proxy, which forwards method calls.)
    """

    def __init__(self, cfg: InferenceConfig):
        from relbridge.models.extract import kb_schema
        from relbridge.models.scoring import ScoringConfig, load_for_inference
        from relbridge.runtime.devices import resolve_device

        if cfg.threshold is None:  # KgBuildConfig resolves both thresholds; a config built alone may not
            cfg = cfg.with_calibrated_threshold()
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.scoring = ScoringConfig(precision=PRECISION[cfg.dtype])
        self.model = load_for_inference(cfg.model, self.scoring.precision, self.device)
        self.model.span_threshold = cfg.span_threshold  # the config's, as hashed into the run id
        self.model.confidence = cfg.confidence
        self.model.readings = cfg.readings
        self.schema = kb_schema(cfg.kb, self.model.inventory.names)
        logger.info("extractor %s on %s (%s)", cfg.model, self.device, cfg.dtype)

    def extract(self, prepared: Sequence) -> list[list[dict[str, Any]]]:
        """Records per prepared sentence (in order)."""
        from relbridge.models.extract import extract_prepared

        numbered = [dataclasses.replace(p, index=j) for j, p in enumerate(prepared)]
        records, _ = extract_prepared(
            self.model, numbered, self.cfg.batch_size, self.cfg.threshold, self.scoring,
            schema=self.schema,
        )  # fmt: skip
        out: list[list[dict[str, Any]]] = [[] for _ in numbered]
        for record in records:
            out[record["sentence"]].append(record)
        return out


class ExtractorModelHandler(ModelHandler):
    """A `ModelHandler` of (Sentence, PreparedSentence) elements; each inference is a record list."""

    def __init__(self, cfg: InferenceConfig):
        super().__init__()
        self.cfg = cfg

    def load_model(self) -> Extractor:
        return Extractor(self.cfg)

    def run_inference(self, batch, model: Extractor, inference_args=None):
        records = model.extract([prepared for _, prepared in batch])
        for (sentence, _), found in zip(batch, records):
            for record in found:
                record["sentence"] = sentence.ordinal
                record.update(
                    source_file=sentence.source_file, line=sentence.line, model=self.cfg.model
                )
                if sentence.id is not None:
                    record["id"] = sentence.id
                record["sentence_in_line"] = sentence.index
            yield PredictionResult(sentence, found)

    def batch_elements_kwargs(self):
        return {
            "min_batch_size": CHUNK_SIZE,  # a fixed size: extract's chunks, not BatchElements' guess
            "max_batch_size": CHUNK_SIZE,
            "length_fn": sentence_length,
            "bucket_boundaries": LENGTH_BUCKETS,
        }

    def share_model_across_processes(self) -> bool:
        if self.cfg.share_model == "auto":
            from relbridge.runtime.devices import resolve_device

            return resolve_device(self.cfg.device).startswith("cuda")
        return self.cfg.share_model == "yes"


def _failed(batch_and_error) -> list[dict]:
    batch, error = batch_and_error
    return [reject("extract_relations", f"{type(error).__name__}: {error}", s) for s, _ in batch]


class ExtractRelations(beam.PTransform):
    """Returns ``{"results": PredictionResult(sentence, records), "dead_letter": ...}``."""

    def __init__(self, cfg: InferenceConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, prepared):
        main, failed = prepared | "RunInference" >> RunInference(
            ExtractorModelHandler(self.cfg)
        ).with_exception_handling()
        dead = failed.failed_inferences | "FailedBatches" >> beam.FlatMap(_failed)
        return {"results": main, "dead_letter": dead}
