"""Text handling that both the Beam pipeline and inference need, free of Beam and torch.

- `relbridge.text.sentences`: split a document into sentences (character spans), for every
  tokenizer language, CJK included.
"""
