"""Tiny random encoders built in code, so tests never download anything.

`build_tiny_encoder(path)` writes a Hugging Face directory (a 2-layer BERT with
hidden size 32 and a character-level WordPiece tokenizer) that `AutoModel` and
`AutoTokenizer` load like any real checkpoint.
"""

from __future__ import annotations

import string

WORDS = [
    "the",
    "of",
    "and",
    "in",
    "is",
    "was",
    "born",
    "at",
    "for",
    "to",
    "a",
    "founded",
    "city",
    "company",
    "president",
    "Berlin",
    "Paris",
    "Germany",
    "France",
    "Siemens",
    "Merkel",
    "Angela",
    "Macron",
    "Emmanuel",
    "Munich",
    "der",
    "die",
    "das",
    "und",
    "in",
    "ist",
    "wurde",
    "geboren",
    "Stadt",
    "Firma",
    "von",
]


def tiny_vocab() -> list[str]:
    chars = string.ascii_letters + string.digits + string.punctuation + "äöüßéèàçÄÖÜÉ"
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens = specials + list(chars) + ["##" + c for c in chars] + sorted(set(WORDS))
    return list(dict.fromkeys(tokens))  # "a" is both a character and a word: ids must stay dense


def build_tiny_encoder(path: str, num_layers: int = 2, hidden: int = 32, seed: int = 0) -> str:
    """Saves a tiny random BERT and its tokenizer to ``path`` and returns it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(tiny_vocab())}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=50))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )
    fast.save_pretrained(path)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(path)
    return path
