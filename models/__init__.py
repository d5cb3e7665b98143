"""The multi-task relation extractor: model, training, evaluation, extraction.

* `extractor`: `RelationExtractor(ModelConfig)`, entity-marker relation head and
  BIO tagging head over one encoder; `model_config`: `ModelConfig` and the model
  directory's files (no torch);
* `data`: shard and RELX/KBP37 readers, bags, language-balanced sampling;
* training: `train_config` (`TrainConfig`: data, model, optim, run groups),
  `units` (training units and the epoch sampler), `optim` (freezing, LoRA,
  AdamW, weight average), `checkpoint` (weights-only, atomic, resumable) and
  `trainer` (`train(cfg) -> dict`, the loop);
* `evaluate`, `tagging`: scores; `extract`, `triples`: raw-text extraction and
  KG triples; `raw_text`: end-to-end raw-text scores and threshold calibration,
  `thresholds`: what extraction reads back of it; `benchmark`: KBP37 -> RELX;
* pair scoring for raw text: `candidates` (which pairs), `markers` (inline and
  levitated inputs), `scoring` (the fast and exact paths) and `prefix` (levitated
  markers over the tagging pass's cached text, the fast path).

Imports only `relbridge.data_specs`, `relbridge.runtime` and `relbridge.text`;
never Beam.
"""
