"""The partial-label CRF loss (models/partial_crf.py) on tiny in-code lattices, by brute force."""

import itertools

import pytest
import torch

from relbridge.models.partial_crf import (
    UNKNOWN,
    allowed_tags,
    bio_structure,
    marginals,
    not_tag,
    partial_crf_loss,
    partial_nll,
    span_posteriors,
    word_emissions,
)

TAGS = ("O", "B-PER", "I-PER")


def _valid(seq):
    start, trans = bio_structure(TAGS)
    return bool(start[seq[0]]) and all(trans[a, b] for a, b in zip(seq, seq[1:]))


def _path_score(em, trans, seq):
    return em[0, seq[0]] + sum(em[t, seq[t]] + trans[seq[t - 1], seq[t]] for t in range(1, len(seq)))


def _brute_log_z(em, trans, keep=lambda seq: True):
    n, k = em.shape
    scores = [
        _path_score(em, trans, seq)
        for seq in itertools.product(range(k), repeat=n)
        if _valid(seq) and keep(seq)
    ]
    return torch.logsumexp(torch.stack(scores), 0)


def test_fully_labelled_loss_is_the_crf_nll():
    torch.manual_seed(0)
    em = torch.randn(1, 4, 3)
    trans = torch.randn(3, 3)
    gold = (1, 2, 0, 1)
    nll = partial_nll(em, torch.ones(1, 4, dtype=torch.bool), torch.tensor([gold]), TAGS, trans)
    expected = _brute_log_z(em[0], trans) - _path_score(em[0], trans, gold)
    assert nll.item() == pytest.approx(expected.item(), abs=1e-4)


def test_partial_loss_sums_over_the_sequences_that_agree():
    torch.manual_seed(1)
    em = torch.randn(1, 4, 3)
    trans = torch.randn(3, 3)
    labels = torch.tensor([[1, UNKNOWN, not_tag(2), UNKNOWN]])
    nll = partial_nll(em, torch.ones(1, 4, dtype=torch.bool), labels, TAGS, trans)
    agree = _brute_log_z(em[0], trans, lambda s: s[0] == 1 and s[2] != 2)
    assert nll.item() == pytest.approx((_brute_log_z(em[0], trans) - agree).item(), abs=1e-4)


def test_unknown_words_add_nothing_when_all_unknown_and_emissions_ignored():
    torch.manual_seed(2)
    em = torch.randn(1, 3, 3, requires_grad=True)
    trans = torch.zeros(3, 3)
    labels = torch.tensor([[UNKNOWN, 0, UNKNOWN]])
    nll = partial_nll(em, torch.ones(1, 3, dtype=torch.bool), labels, TAGS, trans).sum()
    nll.backward()
    # With zero transitions the CRF factorises: the unknown words' emissions do not matter...
    # except through the BIO structure (I- cannot follow O), so compare against brute force.
    agree = _brute_log_z(em[0].detach(), trans, lambda s: s[1] == 0)
    assert nll.item() == pytest.approx((_brute_log_z(em[0].detach(), trans) - agree).item(), abs=1e-4)
    assert torch.isfinite(em.grad).all()
    # A whole sentence of unknown words costs nothing.
    free = partial_nll(em, torch.ones(1, 3, dtype=torch.bool), torch.full((1, 3), UNKNOWN), TAGS, trans)
    assert free.item() == pytest.approx(0.0, abs=1e-5)


def test_padding_does_not_change_the_loss():
    torch.manual_seed(3)
    em = torch.randn(2, 4, 3)
    trans = torch.randn(3, 3)
    labels = torch.tensor([[1, 2, 0, 0], [0, 1, UNKNOWN, 0]])
    mask = torch.tensor([[True, True, False, False], [True] * 4])
    both = partial_nll(em, mask, labels, TAGS, trans)
    alone = partial_nll(em[:1, :2], mask[:1, :2], labels[:1, :2], TAGS, trans)
    assert both[0].item() == pytest.approx(alone[0].item(), abs=1e-5)


def test_marginals_match_brute_force():
    torch.manual_seed(4)
    em = torch.randn(1, 3, 3)
    trans = torch.randn(3, 3)
    probs = marginals(em, torch.ones(1, 3, dtype=torch.bool), TAGS, trans)[0]
    log_z = _brute_log_z(em[0], trans)
    for t in range(3):
        for k in range(3):
            p = _brute_log_z(em[0], trans, lambda s, t=t, k=k: s[t] == k) if t or k != 2 else None
            expected = 0.0 if p is None else (p - log_z).exp().item()
            assert probs[t, k].item() == pytest.approx(expected, abs=1e-4)
    assert probs.sum(-1).tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)


def test_subword_loss_gradients_finite_and_ratio_pushes_unknown_words_out():
    torch.manual_seed(5)
    # Two sentences of subwords; -100 marks continuation subwords; one relation row without words.
    labels = torch.tensor(
        [[-100, 1, -100, 2, UNKNOWN, UNKNOWN, UNKNOWN], [-100, UNKNOWN, 1, not_tag(2), -100, -100, -100],
         [-100] * 7]
    )
    logits = torch.zeros(3, 7, 3)
    logits[..., 1] = 3.0  # every word looks like a name
    logits.requires_grad_(True)
    trans = torch.zeros(3, 3, requires_grad=True)
    loss = partial_crf_loss(logits, labels, TAGS, trans, ratio=0.15, margin=0.05, ratio_weight=10.0)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(trans.grad).all()
    # The ratio term lowers the B-PER score of the unknown words (its gradient is positive).
    assert logits.grad[0, 4, 1] > 0
    # The relation row gets no gradient at all.
    assert (logits.grad[2] == 0).all()
    plain = partial_crf_loss(logits.detach(), labels, TAGS, trans.detach(), ratio_weight=0.0)
    assert loss.item() > plain.item()


def test_word_emissions_and_allowed_tags():
    logits = torch.arange(2 * 4 * 3, dtype=torch.float).reshape(2, 4, 3)
    labels = torch.tensor([[-100, 0, -100, 1], [2, -100, -100, -100]])
    em, mask, word_labels = word_emissions(logits, labels)
    assert mask.tolist() == [[True, True], [True, False]]
    assert em[0, 1].tolist() == logits[0, 3].tolist() and em[1, 0].tolist() == logits[1, 0].tolist()
    allowed = allowed_tags(torch.tensor([[0, UNKNOWN, not_tag(2)]]), 3)
    assert allowed[0].tolist() == [[True, False, False], [True, True, True], [True, True, False]]


def test_encode_tags_partial_marks_unknown_words(tiny_encoder):
    from relbridge.models.extractor import RelationExtractor
    from relbridge.models.model_config import ModelConfig

    model = RelationExtractor(ModelConfig(encoder=tiny_encoder, tag_crf=True))
    words = ["Billy", "Hughes", "led", "Australia", "."]
    enc = model.encode_tags(words, [(0, 2, "")], partial=True)
    first = [lab for lab, w, prev in zip(enc.tag_labels, enc.word_ids, [None, *enc.word_ids])
             if w is not None and w != prev]
    b, i = model.tag2id["B-ENT"], model.tag2id["I-ENT"]
    assert first == [b, i, not_tag(i), UNKNOWN, UNKNOWN]
    full = model.encode_tags(words, [(0, 2, "")])
    assert -1 not in full.tag_labels and model.tag2id["O"] in full.tag_labels


def _mentions(seq, tags):
    """The (start, end, type) mentions of a BIO tag sequence."""
    out, i = [], 0
    while i < len(seq):
        tag = tags[seq[i]]
        if not tag.startswith("B-"):
            i += 1
            continue
        j = i + 1
        while j < len(seq) and tags[seq[j]] == "I-" + tag[2:]:
            j += 1
        out.append((i, j, tag[2:]))
        i = j
    return out


def test_span_posteriors_match_brute_force_with_two_types():
    tags = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG")
    start, allowed = bio_structure(tags)
    torch.manual_seed(7)
    em, trans = torch.randn(5, 5), torch.randn(5, 5)
    weights: dict = {}
    total = 0.0
    for seq in itertools.product(range(5), repeat=5):
        if not start[seq[0]] or not all(allowed[a, b] for a, b in zip(seq, seq[1:])):
            continue
        w = _path_score(em, trans, seq).exp().item()
        total += w
        for mention in _mentions(seq, tags):
            weights[mention] = weights.get(mention, 0.0) + w
    got = {(i, j, t): p for p, i, j, t in span_posteriors(em, tags, trans)}
    assert set(got) == {(i, j, t) for i in range(5) for j in range(i + 1, 6) for t in ("PER", "ORG")}
    for span, p in got.items():
        assert p == pytest.approx(weights.get(span, 0.0) / total, abs=1e-5)


def test_span_posteriors_respect_max_len_and_a_one_word_sentence():
    em = torch.tensor([[0.0, 2.0, -9.0]])
    (p, i, j, t), = span_posteriors(em, TAGS, torch.zeros(3, 3))
    assert (i, j, t) == (0, 1, "PER") and p == pytest.approx(torch.tensor([0.0, 2.0]).softmax(0)[1].item())
    spans = span_posteriors(torch.randn(6, 3), TAGS, torch.zeros(3, 3), max_len=2)
    assert max(j - i for _, i, j, _ in spans) == 2 and len(spans) == 6 + 5


def test_span_posteriors_of_a_padded_batch_are_each_sentences_own():
    from relbridge.models.partial_crf import batch_span_posteriors

    torch.manual_seed(3)
    tags = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG")
    trans = torch.randn(5, 5)
    sentences = [torch.randn(n, 5) for n in (7, 1, 4)]
    batched = batch_span_posteriors(sentences, tags, trans)
    for em, got in zip(sentences, batched):
        alone = batch_span_posteriors([em], tags, trans)[0]
        assert [s[1:] for s in got] == [s[1:] for s in alone]
        assert [s[0] for s in got] == pytest.approx([s[0] for s in alone], abs=1e-6)
    assert len(batched[1]) == 2  # one word: one span per type
