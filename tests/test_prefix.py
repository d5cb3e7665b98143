"""Pairs scored over the tagging pass's cache: the same tags, probabilities and records."""

import numpy as np
import pytest
import torch

from relbridge.models import markers, prefix
from relbridge.models.markers import PairSpec
from relbridge.models.extractor import RelationExtractor
from relbridge.models.model_config import ModelConfig
from relbridge.models.scoring import ScoringConfig, score_pairs
from relbridge.models.tagging import tag_mentions
from tiny_models import scoring_cases

WORDS = ["Angela", "Merkel", "was", "born", "in", "Berlin", "and", "Macron", "in", "Paris"]
FP32 = ScoringConfig(pairs_per_row=2, batch_tokens=64, precision="fp32")


def _model(tiny_encoder, **kw):
    torch.manual_seed(0)
    kw.setdefault("marker_mode", "levitated")
    cfg = ModelConfig(encoder=tiny_encoder, relations=("NA", "r", "s"), dropout=0.0, **kw)
    model = RelationExtractor(cfg).eval()
    with torch.no_grad():  # a tagging head that is not all zeros, so tags differ by word
        model.tag_head.weight.normal_()
    return model


def _passes(model, words_list):
    return prefix.text_passes(model, words_list, batch_size=2, precision="fp32")


def test_marker_mask_sees_own_text_and_own_pair_only():
    groups = torch.tensor([[1, 1, 1, 1, 2, 2, 2, 2], [1, 1, 1, 1, -1, -1, -1, -1]])
    bias = prefix._bias(groups, torch.tensor([3, 2]), 3, torch.float32)  # (B, 1, M, T + M)
    allowed = bias[:, 0] == 0
    assert bias.shape == (2, 1, 8, 11)
    assert allowed[0, 0, :3].all() and allowed[0, 0, 3:7].all() and not allowed[0, 0, 7:].any()
    assert allowed[0, 5, 7:].all() and not allowed[0, 5, 3:7].any()  # pair 2: not pair 1
    assert allowed[1, 0, :2].all() and not allowed[1, 0, 2]  # row 2's text is 2 long: no padding
    assert not allowed[1, :, 7:].any()  # padding markers are never attended


def test_text_pass_tags_as_tag_mentions(tiny_encoder):
    from relbridge.models.tagging import decode_mentions

    model = _model(tiny_encoder)
    sentences = [WORDS, ["Macron", "and", "Merkel"], WORDS[:4]]
    passes = _passes(model, sentences)
    assert [len(p) for p in passes] == [len(model.encode_tags(w).input_ids) for w in sentences]
    layers = model.encoder.config.num_hidden_layers
    assert len(passes[0].keys) == len(passes[0].values) == layers
    assert [len(p.text.first) for p in passes] == list(map(len, sentences))
    found = decode_mentions(model, [p.tag_logits for p in passes], [p.text.first for p in passes])
    assert found == tag_mentions(model, sentences, precision="fp32")


def test_text_pass_gives_the_span_probabilities_of_tag_mentions(tiny_encoder):
    from relbridge.models.tagging import decode_mentions

    model = _model(tiny_encoder)
    sentences = [WORDS, ["Macron", "and", "Merkel"]]
    with pytest.raises(ValueError, match="span decoding"):  # marginal decoding has none
        tag_mentions(model, sentences, with_probability=True)
    model.span_threshold = 0.05
    passes = _passes(model, sentences)
    logits, firsts = [p.tag_logits for p in passes], [p.text.first for p in passes]
    cached = decode_mentions(model, logits, firsts, with_probability=True)
    tagged = tag_mentions(model, sentences, precision="fp32", with_probability=True)
    for got, want, words in zip(cached, tagged, sentences):
        assert [m[:3] for m in got.mentions] == [m[:3] for m in want.mentions]
        assert got.names == pytest.approx(want.names, abs=1e-5)
        assert want.mentions and len(want.names) == len(words) * (len(words) + 1) // 2
        for start, end, _, p in want.mentions:  # one type's share of "one name of any type"
            assert 0.05 <= p <= want.names[start, end] + 1e-6
        assert all(0.0 <= p <= 1.0 + 1e-5 for p in want.names.values())


def test_cached_path_equals_packed_and_exact(tiny_encoder):
    model = _model(tiny_encoder)
    sentences = scoring_cases()
    passes = _passes(model, [w for w, _ in sentences])
    assert [prefix.fits(model, p, pairs) for p, (_, pairs) in zip(passes, sentences)] == [
        True, True, True, False
    ]  # fmt: skip
    # words 0 and 2 have a subword each, word 1 has none
    text = markers.TextLayout([0, 5, 6, 2], first=[1, -1, 2], last=[1, -1, 2])
    no_subword = prefix.TextPass(text, None, (), ())
    assert prefix.fits(model, no_subword, [PairSpec((0, 1), (2, 3))])
    assert not prefix.fits(model, no_subword, [PairSpec((0, 2), (2, 3))])
    cached, rows = score_pairs(model, sentences, FP32, passes)
    packed, _ = score_pairs(model, sentences, FP32)
    exact, _ = score_pairs(model, sentences, ScoringConfig(exact=True, precision="fp32"))
    assert [c.shape for c in cached] == [(3, 2, 3), (1, 2, 3), (0, 2, 3), (1, 2, 3)]
    for c, p, e in zip(cached, packed, exact):
        assert np.allclose(c, p, atol=1e-5) and np.allclose(c, e, atol=1e-5)
    assert rows == 4  # 3 pairs in 2 marker rows, then 1, none, and the long one packed


def test_extract_reuses_the_tagging_pass_and_agrees_with_exact(tiny_encoder):
    from relbridge.models.extract import extract

    model = _model(tiny_encoder)
    sentences = [" ".join(WORDS), "Macron met Merkel in Paris .", "Nobody came ."]
    fast_stats, exact_stats = {}, {}
    fast = extract(model, sentences, threshold=0.0, scoring=FP32, stats=fast_stats)
    exact = extract(
        model, sentences, threshold=0.0, scoring=ScoringConfig(exact=True, precision="fp32"),
        stats=exact_stats,
    )  # fmt: skip
    assert fast_stats["candidate_pairs"] == exact_stats["candidate_pairs"] > 0
    assert fast_stats["encoder_passes"] < exact_stats["encoder_passes"]
    assert fast  # the random tagger finds names, and threshold 0 keeps every related pair
    strip = [{k: v for k, v in r.items() if k != "confidence"} for r in fast]
    assert strip == [{k: v for k, v in r.items() if k != "confidence"} for r in exact]
    assert np.allclose([r["confidence"] for r in fast], [r["confidence"] for r in exact], atol=1e-5)


def test_inline_models_and_other_encoders_do_not_cache(tiny_encoder):
    assert prefix.cacheable(_model(tiny_encoder))
    assert not prefix.cacheable(_model(tiny_encoder, marker_mode="inline"))
