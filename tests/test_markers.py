"""Levitated markers: the packed input, its attention mask, and packed == one pair per pass."""

import numpy as np
import torch

from relbridge.models import markers
from relbridge.models.extractor import RelationExtractor
from relbridge.models.model_config import ModelConfig
from tiny_models import scoring_cases

WORDS = ["Angela", "Merkel", "was", "born", "in", "Berlin", "and", "Macron", "in", "Paris"]
PAIRS = [
    markers.PairSpec((0, 2), (5, 6)),
    markers.PairSpec((7, 8), (9, 10)),
    markers.PairSpec((0, 2), (7, 8)),
]


def _model(tiny_encoder, **kw):
    torch.manual_seed(0)
    kw.setdefault("marker_mode", "levitated")
    cfg = ModelConfig(encoder=tiny_encoder, relations=("NA", "r", "s"), dropout=0.0, **kw)
    return RelationExtractor(cfg).eval()


def _marker_ids(model):
    ids = [model.marker_ids[m] for m in ("[E1]", "[/E1]", "[E2]", "[/E2]")]
    return [tuple(ids)] * len(PAIRS)


def test_pack_places_markers_at_their_spans_positions(tiny_encoder):
    model = _model(tiny_encoder)
    text = markers.layout(model.tokenizer, WORDS)
    ids, positions, groups, starts = markers.pack(text, PAIRS, _marker_ids(model), 0, 64)
    n = len(text.input_ids)
    assert ids[:n] == text.input_ids and groups[:n] == [0] * n
    assert len(ids) == n + 4 * len(PAIRS) and groups[n:] == [1] * 4 + [2] * 4 + [3] * 4
    # pair 2 (Macron -> Paris): open E1 at Macron's first subword, close E2 at Paris's last
    assert positions[n + 4] == text.first[7] and positions[n + 7] == text.last[9]
    assert starts[1] == (n + 4, n + 6)
    assert markers.pack(text, PAIRS, _marker_ids(model), 0, 3) is None  # spans do not fit


def test_attention_bias_isolates_pairs_and_hides_markers_from_text():
    groups = torch.tensor([[0, 0, 0, 1, 1, 2, 2, -1]])
    allowed = markers.attention_bias(groups, torch.float32)[0, 0] == 0  # (T, T)
    assert allowed[0, :3].all() and not allowed[0, 3:].any()  # text sees text only
    assert allowed[3, :5].all() and not allowed[3, 5:].any()  # pair 1: text + its own markers
    assert allowed[5, [0, 1, 2, 5, 6]].all() and not allowed[5, [3, 4, 7]].any()
    assert not allowed[:, 7].any()  # padding is never attended


def test_text_is_encoded_as_without_markers(tiny_encoder):
    model = _model(tiny_encoder)
    text = markers.layout(model.tokenizer, WORDS)
    ids, positions, groups, _ = markers.pack(
        text, PAIRS, _marker_ids(model), model.position_offset, 64
    )
    packed = {
        "input_ids": torch.tensor([ids]),
        "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
        "position_ids": torch.tensor([positions]),
        "groups": torch.tensor([groups]),
    }
    plain = {"input_ids": torch.tensor([text.input_ids]),
             "attention_mask": torch.ones(1, len(text.input_ids), dtype=torch.long)}
    with torch.no_grad():
        a = model.encode(packed)[0, : len(text.input_ids)]
        b = model.encode(plain)[0]
    assert torch.allclose(a, b, atol=1e-5)


def test_one_pair_per_pass_equals_many_pairs_per_pass(tiny_encoder):
    model = _model(tiny_encoder)
    singles = model.collate([model.encode_pair(WORDS, p.e1, p.e2) for p in PAIRS])
    text = markers.layout(model.tokenizer, WORDS)
    ids, positions, groups, starts = markers.pack(
        text, PAIRS, _marker_ids(model), model.position_offset, 64
    )
    with torch.no_grad():
        one = model(singles, labels=False)["relation_logits"]  # (P, 2, R)
        hidden = model.encode({
            "input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids)),
            "position_ids": torch.tensor([positions]), "groups": torch.tensor([groups]),
        })  # fmt: skip
        e1 = torch.tensor([s for s, _ in starts])
        e2 = torch.tensor([s for _, s in starts])
        reps = model.pair_representations(hidden.expand(len(PAIRS), -1, -1), e1, e2)
        many = model.rel_head(reps)
    assert torch.allclose(one, many, atol=1e-5)


def test_old_model_configs_load_with_inline_markers(tiny_encoder):
    cfg = ModelConfig.from_json({"encoder": tiny_encoder, "relations": ["NA", "r"]})
    assert cfg.marker_mode == "inline"
    assert ModelConfig(encoder=tiny_encoder).marker_mode == "inline"


def test_fast_path_equals_exact_path(tiny_encoder):
    from relbridge.models.scoring import ScoringConfig, score_pairs

    model = _model(tiny_encoder)
    sentences = scoring_cases()
    cfg = ScoringConfig(pairs_per_pass=2, batch_tokens=64, precision="fp32")
    fast, fast_passes = score_pairs(model, sentences, cfg)
    exact, exact_passes = score_pairs(model, sentences, ScoringConfig(exact=True, precision="fp32"))
    assert [f.shape for f in fast] == [(3, 2, 3), (1, 2, 3), (0, 2, 3), (1, 2, 3)]
    for f, e in zip(fast, exact):
        assert np.allclose(f, e, atol=1e-5)
    assert exact_passes == 5 and fast_passes == 4  # 3 pairs in 2 passes, then 1, 0 and 1


def test_a_bf16_encoder_scores_as_the_float32_one_and_is_always_autocast(tiny_encoder):
    from relbridge.models.scoring import ScoringConfig, for_inference, score_pairs
    from relbridge.models.tagging import tag_mentions
    from relbridge.runtime.devices import computes_in_bf16

    model = _model(tiny_encoder)
    sentences = [(WORDS, PAIRS)]
    reference, _ = score_pairs(model, sentences, ScoringConfig(precision="fp32"))
    assert not computes_in_bf16(model, "fp32")
    half = for_inference(_model(tiny_encoder), "bf16")
    assert half.encoder.get_input_embeddings().weight.dtype == torch.bfloat16
    assert half.rel_head.weight.dtype == torch.float32  # the heads stay float32
    assert computes_in_bf16(half, "fp32")  # float32 code could not read bf16 weights
    for exact in (False, True):  # "fp32" asked: still autocast, since the weights are bf16
        probs, _ = score_pairs(half, sentences, ScoringConfig(exact=exact, precision="fp32"))
        assert np.abs(probs[0] - reference[0]).max() < 0.05
    assert len(tag_mentions(half, [WORDS], precision="fp32")) == 1


def test_subword_bounds_of_words_with_none_one_and_several_subwords():
    # [CLS] w0 w2 w2 [SEP]: word 1 has no subword, word 3 is past the end
    first, last = markers.subword_bounds([None, 0, 2, 2, None], 4)
    assert first == [1, -1, 2, -1] and last == [1, -1, 3, -1]
