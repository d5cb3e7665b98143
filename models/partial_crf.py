"""A linear-chain CRF over BIO word tags that learns from partial labels.

Why: distant supervision labels only the names a KB knows, and KBP37/RELX mark
only the two arguments of each sentence. Teaching every other word as ``O``
teaches the tagger that most names are ``O`` (the demo's tagger found 30-36% of
the gold arguments). Here a word that no label covers is *unknown*: the loss is
the negative log of the total probability of every tag sequence consistent with
the known labels (the marginal likelihood of a CRF over a constrained lattice;
Tsuboi et al. 2008 "Training CRFs using incomplete annotations", Jie et al. 2019
"Better modeling of incomplete annotations for NER"):

    loss = log Z(all sequences) - log Z(sequences that agree with the labels)

which is the ordinary CRF negative log-likelihood when every word is labelled,
and ignores a word whose label is unknown except through the transitions.

With only positive labels (KBP37 never says what is *not* an entity), nothing
stops the model from calling every unknown word a name, so the expected
entity ratio loss of Effland & Collins (2021, "Partially supervised named
entity recognition via the expected entity ratio loss") keeps the expected
share of words inside a mention, under the CRF's marginals, within
``ratio +- margin``: ``weight * max(0, |E[share] - ratio| - margin)``. It was
chosen over positive-unlabelled risk estimation (Peng et al. 2019, AdaPU),
which needs a class prior per type and a dictionary-specific estimate, and
over Jie et al.'s k-fold re-estimation of the unknown words' distribution,
which trains k extra models (hours on CPU).

Label codes per word (``tag_labels`` at first subwords, -100 elsewhere):
``k >= 0`` the tag ``k``; `UNKNOWN` (-1) any tag; ``-2 - k`` any tag but ``k``
(the word after a known mention is not its continuation ``I-t``).

The BIO structure is hard: ``I-t`` only follows ``B-t`` or ``I-t``, never
starts a sentence. Transition scores start at zero, so an untrained CRF's
marginals are the per-word softmax.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

UNKNOWN = -1
NOT_A_WORD = -100
_NEG = -1e4  # a disallowed score: exp() is 0 in float32, gradients stay finite


def not_tag(k: int) -> int:
    """The label code for "any tag but ``k``"."""
    return -2 - k


def bio_structure(tags: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Allowed first tags (K,) and allowed transitions (K, K) ``[previous, next]`` of BIO tags.

    >>> start, trans = bio_structure(("O", "B-PER", "I-PER"))
    >>> start.tolist(), trans[0].tolist(), trans[1].tolist()
    ([True, True, False], [True, True, False], [True, True, True])
    """
    k = len(tags)
    start = torch.tensor([not t.startswith("I-") for t in tags])
    trans = torch.ones(k, k, dtype=torch.bool)
    for j, t in enumerate(tags):
        if t.startswith("I-"):
            for i, p in enumerate(tags):
                trans[i, j] = p[2:] == t[2:] and p != "O"
    return start, trans


def allowed_tags(labels: torch.Tensor, num_tags: int) -> torch.Tensor:
    """(B, N, K) bool: the tags each word may take under its label code (B, N)."""
    ids = torch.arange(num_tags, device=labels.device)
    exact = labels.unsqueeze(-1) == ids  # (B, N, K)
    unknown = (labels == UNKNOWN).unsqueeze(-1)
    negated = (labels <= -2) & (labels != NOT_A_WORD)
    but = negated.unsqueeze(-1) & ((-2 - labels).unsqueeze(-1) != ids)
    return exact | unknown | but


def word_emissions(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Word-level emissions from subword logits, left-aligned.

    Args:
      logits: (B, T, K) tag scores per subword.
      labels: (B, T) label codes, `NOT_A_WORD` at subwords that are not a word's first.

    Returns:
      ``(emissions (B, N, K), mask (B, N) bool, word_labels (B, N))`` with N the
      most words of a row.
    """
    is_word = labels != NOT_A_WORD  # (B, T)
    counts = is_word.sum(1)  # (B,)
    n = max(int(counts.max()) if counts.numel() else 0, 1)
    b, _, k = logits.shape
    emissions = logits.new_zeros(b, n, k)
    word_labels = labels.new_full((b, n), UNKNOWN)
    mask = torch.arange(n, device=labels.device).unsqueeze(0) < counts.unsqueeze(1)  # (B, N)
    rows, cols = is_word.nonzero(as_tuple=True)
    emissions[mask] = logits[rows, cols]
    word_labels[mask] = labels[rows, cols]
    return emissions, mask, word_labels


def _forward(
    emissions: torch.Tensor, mask: torch.Tensor, trans: torch.Tensor, start: torch.Tensor
) -> torch.Tensor:
    """Log-sum over paths of every prefix: alpha (B, N, K) (masked steps carry the previous)."""
    alpha = [start.unsqueeze(0) + emissions[:, 0]]  # (B, K)
    for t in range(1, emissions.size(1)):
        step = torch.logsumexp(alpha[-1].unsqueeze(2) + trans.unsqueeze(0), dim=1) + emissions[:, t]
        alpha.append(torch.where(mask[:, t : t + 1], step, alpha[-1]))
    return torch.stack(alpha, dim=1)


def _scores(
    emissions: torch.Tensor, tags: Sequence[str], transitions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Emission-side start scores (K,) and transition scores (K, K) with the BIO structure."""
    start_ok, trans_ok = bio_structure(tags)
    start_ok, trans_ok = start_ok.to(emissions.device), trans_ok.to(emissions.device)
    start = torch.where(start_ok, 0.0, _NEG).to(emissions.dtype)
    trans = torch.where(trans_ok, transitions.to(emissions.dtype), _NEG)
    return start, trans


def log_partition(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    tags: Sequence[str],
    transitions: torch.Tensor,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """log Z (B,) over all BIO-valid tag sequences, or only those ``allowed`` (B, N, K) permits."""
    start, trans = _scores(emissions, tags, transitions)
    if allowed is not None:
        emissions = emissions.masked_fill(~allowed, _NEG)
    alpha = _forward(emissions, mask, trans, start)
    return torch.logsumexp(alpha[:, -1], dim=-1)


def marginals(
    emissions: torch.Tensor, mask: torch.Tensor, tags: Sequence[str], transitions: torch.Tensor
) -> torch.Tensor:
    """Posterior tag probabilities per word (B, N, K), by forward-backward (differentiable)."""
    start, trans = _scores(emissions, tags, transitions)
    alpha = _forward(emissions, mask, trans, start)
    beta = _backward(emissions, mask, trans)
    log_z = torch.logsumexp(alpha[:, -1], dim=-1)  # (B,)
    return (alpha + beta - log_z[:, None, None]).exp() * mask.unsqueeze(-1)


def _backward(emissions: torch.Tensor, mask: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """Log-sum over paths of every suffix after each step: beta (B, N, K)."""
    beta = [torch.zeros_like(emissions[:, 0])]  # beta at the last step
    for t in range(emissions.size(1) - 2, -1, -1):
        step = torch.logsumexp(trans.unsqueeze(0) + (emissions[:, t + 1] + beta[0]).unsqueeze(1), 2)
        beta.insert(0, torch.where(mask[:, t + 1 : t + 2], step, beta[0]))
    return torch.stack(beta, dim=1)


def span_posteriors(
    emissions: torch.Tensor, tags: Sequence[str], transitions: torch.Tensor, max_len: int = 12
) -> list[tuple[float, int, int, str]]:
    """The posterior probability of every typed span of one sentence being a whole mention.

    ``P(words [i, j) are exactly one mention of type t)``: the total probability
    of the tag sequences with ``B-t`` at ``i``, ``I-t`` up to ``j - 1`` and no
    ``I-t`` at ``j``, by forward-backward. Unlike per-word marginals, it scores the
    span as a whole, so a name whose second word the head is unsure of still has
    one probability to compare with its shorter reading.

    Args:
      emissions: (N, K) word scores of one sentence (N >= 1).
      tags: the BIO tag names.
      transitions: (K, K) transition scores (zeros for a per-word softmax head).
      max_len: the longest span considered, in words.

    Returns:
      ``(probability, start, end, type)`` for every span up to ``max_len`` words.
    """
    return batch_span_posteriors([emissions], tags, transitions, max_len)[0]


def batch_span_posteriors(
    emissions: Sequence[torch.Tensor],
    tags: Sequence[str],
    transitions: torch.Tensor,
    max_len: int = 12,
) -> list[list[tuple[float, int, int, str]]]:
    """`span_posteriors` of many sentences ((N_i, K) each, N_i >= 1) at once.

    One forward-backward over the right-padded batch gives each sentence the
    scores it gets alone (a padded step carries the last one), in a fraction of
    the per-word steps: the steps, not the arithmetic, cost on a CPU.
    """
    lengths = torch.tensor([len(e) for e in emissions])
    em = torch.nn.utils.rnn.pad_sequence([e.float() for e in emissions], batch_first=True)
    mask = torch.arange(em.size(1)).unsqueeze(0) < lengths.unsqueeze(1)  # (B, N)
    start, trans = _scores(em, tags, transitions.float())
    alpha, beta = _forward(em, mask, trans, start), _backward(em, mask, trans)  # (B, N, K)
    return [
        _sentence_spans(em[b, :n], alpha[b, :n], beta[b, :n], start, trans, tags, max_len)
        for b, n in enumerate(lengths.tolist())
    ]


def _sentence_spans(em, alpha, beta, start, trans, tags, max_len) -> list:
    """One sentence's span posteriors from its (N, K) emissions, alpha and beta."""
    n = em.size(0)
    log_z = torch.logsumexp(alpha[-1], dim=-1)
    first = torch.arange(n).unsqueeze(1)  # span start i (rows)
    length = torch.arange(n).unsqueeze(0) - first + 1  # words in [i, j] for last word j (columns)
    keep = ((length >= 1) & (length <= max_len)).nonzero().tolist()
    out = []
    for ty in sorted({t[2:] for t in tags if t != "O"}):
        b, i_tag = tags.index("B-" + ty), tags.index("I-" + ty)
        other = [k for k in range(len(tags)) if k != i_tag]
        # enter[i]: log-sum of the paths up to word i that put B-t there.
        before = torch.logsumexp(alpha[:-1] + trans[:, b], dim=1)
        enter = em[:, b] + torch.cat([start[b : b + 1], before])
        # leave[last][j]: of the paths after word j, those that do not continue the mention.
        after = em[1:, other] + beta[1:, other]
        leave_b = torch.cat([torch.logsumexp(trans[b, other] + after, 1), em.new_zeros(1)])
        leave_i = torch.cat([torch.logsumexp(trans[i_tag, other] + after, 1), em.new_zeros(1)])
        # inside[i, j]: I-t on words i+1..j; cumulative sums of the I-t steps make it a difference.
        steps = torch.cat([em.new_zeros(1), trans[i_tag, i_tag] + em[1:, i_tag]])
        cum = steps.cumsum(0)
        second = torch.cat([trans[b, i_tag] + em[1:, i_tag], em.new_zeros(1)])
        inside = (second - cum.roll(-1)).unsqueeze(1) + cum.unsqueeze(0)
        log_p = torch.where(
            length == 1,
            enter.unsqueeze(1) + leave_b.unsqueeze(0),
            enter.unsqueeze(1) + inside + leave_i.unsqueeze(0),
        ) - log_z
        probs = log_p.exp().tolist()  # one conversion, not one per span
        out += [(probs[i][j], i, j + 1, ty) for i, j in keep]
    return out


def partial_nll(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    word_labels: torch.Tensor,
    tags: Sequence[str],
    transitions: torch.Tensor,
) -> torch.Tensor:
    """Negative log marginal likelihood of the partial labels per sentence (B,)."""
    allowed = allowed_tags(word_labels, len(tags)) | ~mask.unsqueeze(-1)
    full = log_partition(emissions, mask, tags, transitions)
    constrained = log_partition(emissions, mask, tags, transitions, allowed)
    return full - constrained


def entity_ratio_loss(
    probs: torch.Tensor, mask: torch.Tensor, outside: int, ratio: float, margin: float
) -> torch.Tensor:
    """``max(0, |expected share of words in a mention - ratio| - margin)`` over the batch's words."""
    words = mask.sum()
    if not words:
        return probs.sum() * 0.0
    share = (1.0 - probs[..., outside])[mask].sum() / words
    return torch.clamp((share - ratio).abs() - margin, min=0.0)


def partial_crf_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    tags: Sequence[str],
    transitions: torch.Tensor,
    ratio: float = 0.2,
    margin: float = 0.05,
    ratio_weight: float = 10.0,
) -> torch.Tensor:
    """The tagging loss: partial-label CRF NLL per word, plus the expected-entity-ratio term.

    Args:
      logits: (B, T, K) subword tag scores.
      labels: (B, T) label codes (see the module docstring); rows without a word
        (relation inputs) contribute nothing.
      tags: the tag names, ``O`` among them.
      transitions: (K, K) learned transition scores.
      ratio, margin, ratio_weight: the expected entity ratio term (0 weight: off).

    Returns:
      A scalar; a graph-connected zero when the batch has no word.
    """
    logits = logits.float()
    emissions, mask, word_labels = word_emissions(logits, labels)
    has_words = mask.any(1)
    if not has_words.any():
        return logits.sum() * 0.0
    emissions, mask, word_labels = emissions[has_words], mask[has_words], word_labels[has_words]
    nll = partial_nll(emissions, mask, word_labels, tags, transitions).sum() / mask.sum()
    if ratio_weight <= 0:
        return nll
    probs = marginals(emissions, mask, tags, transitions)
    outside = list(tags).index("O")
    return nll + ratio_weight * entity_ratio_loss(probs, mask, outside, ratio, margin)
