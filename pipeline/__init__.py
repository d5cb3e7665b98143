"""The Beam DAG: ReadBitext -> Tokenize -> LabelWithKb -> AlignWords -> ProjectLabels -> WriteShards.

One PTransform per stage module (`ingest`, `tokenize`, `label`, `align`,
`project`, `write_shards`), each with its frozen config; `options` builds the
`PipelineConfig` of all of them from the flags, `main` only wires the stages.
The only package that imports Beam; the per-pair logic lives in
`relbridge.alignment` and `relbridge.projection`.

Importing Apache Beam without its ``gcp`` extra logs "apitools not found ..."
to the root logger on every run (the BigQuery client is optional and nothing
here uses it). A root-logger filter installed before any stage imports Beam
drops that one notice; everything else Beam logs passes.
"""

import logging


class _DropBeamApitoolsNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("apitools not found")


logging.getLogger().addFilter(_DropBeamApitoolsNotice())
