"""Word alignment: which target words translate which source words.

`aligner.WordAligner` embeds both sentences with a multilingual encoder and
extracts links (`methods`: argmax, itermax, match, softmax; registered presets
by name), optionally with eflomal's statistical links (`statistical`,
`symmetrize`); `embed` batches the encoder, `metrics` scores AER against gold.
`finetune` self-trains the encoder on unlabelled parallel text (awesome-align),
with its objectives in `self_training`. Imports only `relbridge.data_specs`
and `relbridge.runtime`; label projection is `relbridge.projection`.
"""
