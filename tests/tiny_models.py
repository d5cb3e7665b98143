"""Tiny random encoders built in code, so tests never download anything.

`build_tiny_encoder(path)` writes a Hugging Face directory (a 2-layer BERT with
hidden size 32 and a character-level WordPiece tokenizer) that `AutoModel` and
`AutoTokenizer` load like any real checkpoint. With ``metaspace=True`` the
tokenizer is sentencepiece-like instead (XLM-R's layout: a Unigram model with
``"▁"`` word-start pieces), so a word it knows only as characters starts with
a lone ``"▁"`` piece, as Chinese words do under XLM-R.
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


def _metaspace_tokenizer(vocab: dict[str, int]):
    """A Unigram tokenizer over ``"▁" + word`` pieces, single characters and a lone ``"▁"``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    scores = [(piece, -1.0 if piece.startswith("▁") else -2.0) for piece in vocab]
    tok = Tokenizer(models.Unigram(scores, unk_id=vocab["[UNK]"]))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    return tok


def build_tiny_encoder(
    path: str, num_layers: int = 2, hidden: int = 32, seed: int = 0, metaspace: bool = False
) -> str:
    """Saves a tiny random BERT and its tokenizer to ``path`` and returns it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    if metaspace:
        chars = string.ascii_letters + string.digits + string.punctuation + "科学家一直"
        pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "▁", *chars]
        vocab = {p: i for i, p in enumerate(dict.fromkeys(pieces + ["▁" + w for w in WORDS]))}
        tok = _metaspace_tokenizer(vocab)
    else:
        vocab = {tok: i for i, tok in enumerate(tiny_vocab())}
        tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=50))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
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


def scoring_cases():
    """Word-split sentences with candidate pairs for the pair scorers: several pairs, one, none,
    and one sentence longer than ``max_seq_len`` (128) subwords."""
    from relbridge.models.markers import PairSpec

    words = ["Angela", "Merkel", "was", "born", "in", "Berlin", "and", "Macron", "in", "Paris"]
    pairs = [PairSpec((0, 2), (5, 6)), PairSpec((7, 8), (9, 10)), PairSpec((0, 2), (7, 8))]
    long_words = ["Paris"] * 150 + ["Merkel", "in", "Berlin"]
    return [
        (words, pairs),
        (["Macron", "and", "Merkel"], [PairSpec((0, 1), (2, 3))]),
        (["nothing", "here"], []),
        (long_words, [PairSpec((150, 151), (152, 153))]),
    ]
