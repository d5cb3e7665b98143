"""Evaluation of label projection against target-side gold spans.

Two parallel gold sets mark entities on both sides, so projecting the source
gold spans and comparing them with the target gold measures `project_pair`:

* RELX (``--format relx``): two entities per sentence; they are compared by
  role (subject / object, from `RelxRecord.subject_object`), never by RELX's
  ``<e1>``/``<e2>`` order, which follows each language's word order. The
  share of sentences whose two entities both project exactly (``both_exact``)
  is what relation-label projection needs.
* Parallel CoNLL-2002 BIO files (``--format conll``): entities are compared by
  type; a projected span is right when the target gold has the same span with
  the same type.

Metrics: exact-span ``precision`` (right / projected), ``recall`` (right /
gold target spans), ``f1``, and ``token_f1`` (micro F1 over (sentence, token,
role-or-type) triples). ``punct_insensitive`` repeats the exact-span figures
with punctuation tokens cut off both edges of every projected and gold span
(`strip_edge_punctuation`): RELX's translators sometimes put a comma, a
period or a hyphen inside the markers (``<e1> Marios Garoyian, </e1>``,
``<e2>-Künstler </e2>``), which no projection that keeps names clean can
match. Used by ``relbridge eval-projection``:

    pairs = load_relx_pairs("RELX_en.txt", "RELX_de.txt")
    links, extra = align_pairs(pairs, aligner, methods=["itermax"])  # aligner computes itermax too
    scores = evaluate(pairs, links, ProjectConfig(), extra_links=extra["itermax"],
                      src_lang="en", tgt_lang="de")  # languages: function-word rule
    print(scores.as_dict())
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from relbridge.data_specs.formats import bio_spans, open_lines
from relbridge.data_specs.schema import Mention, RelationInstance
from relbridge.projection.link_rules import Link
from relbridge.projection.projection import ProjectConfig, ProjectionCounts, project_pair
from relbridge.projection.span_search import trim_span
from relbridge.runtime.metrics import prf

logger = logging.getLogger(__name__)

ROLES = ("subject", "object")


@dataclass(frozen=True)
class GoldPair:
    """One parallel sentence with gold spans on both sides.

    Attributes:
      src_words, tgt_words: the two sides' words.
      src_mentions: source gold entities; ``type`` is the role (RELX) or the
        entity type (CoNLL).
      tgt_gold: target gold ``(start, end, role-or-type)`` word spans.
      relations: gold relations between ``src_mentions`` (RELX: one, subject -> object).
      id: record id, for error listings.
    """

    src_words: tuple[str, ...]
    tgt_words: tuple[str, ...]
    src_mentions: tuple[Mention, ...]
    tgt_gold: tuple[tuple[int, int, str], ...]
    relations: tuple[RelationInstance, ...] = ()
    id: str = ""


# ----------------------------------------------------------------------------
# Loading gold sets
# ----------------------------------------------------------------------------


def relx_gold_pair(src, tgt, gold_cuts: bool = True) -> GoldPair | None:
    """A `GoldPair` from two parallel `RelxRecord`s; ``None`` if an entity is empty.

    Args:
      src, tgt: records with the same id.
      gold_cuts: split target words at the gold entity boundaries (as the
        source side always is). False tokenises the target without knowing
        the gold, and the gold span becomes the words it overlaps, so an
        entity glued to a neighbour (``l'ABA``) can then not be matched exactly.
    """
    from relbridge.data_specs.relx import words_with_spans
    from relbridge.data_specs.schema import char_span_to_words

    relation, src_subj, src_obj = src.subject_object()
    _, tgt_subj, tgt_obj = tgt.subject_object()
    src_words, src_spans = words_with_spans(src.text, [src_subj, src_obj])
    if gold_cuts:
        tgt_words, tgt_spans = words_with_spans(tgt.text, [tgt_subj, tgt_obj])
    else:
        tgt_words, _ = words_with_spans(tgt.text)
        offsets, pos = [], 0
        for word in tgt_words:
            pos = tgt.text.index(word, pos)
            offsets.append((pos, pos + len(word)))
            pos += len(word)
        tgt_spans = [char_span_to_words(offsets, *s) or (-1, -1) for s in (tgt_subj, tgt_obj)]
    spans = [*src_spans, *tgt_spans]
    if any(s[0] < 0 or s[0] >= s[1] for s in spans):
        return None
    mentions = tuple(Mention(s, e, role, role) for (s, e), role in zip(src_spans, ROLES))
    return GoldPair(
        tuple(src_words),
        tuple(tgt_words),
        mentions,
        tuple((s, e, role) for (s, e), role in zip(tgt_spans, ROLES)),
        (RelationInstance(0, 1, relation),),
        src.id,
    )


def load_relx_pairs(src_path: str, tgt_path: str, gold_cuts: bool = True) -> list[GoldPair]:
    """Parallel RELX files -> gold pairs (records with an empty entity are skipped)."""
    from relbridge.data_specs.relx import read_relx

    src, tgt = read_relx(src_path), read_relx(tgt_path)
    tgt_by_id = {r.id: r for r in tgt}
    pairs, skipped = [], 0
    for record in src:
        other = tgt_by_id.get(record.id)
        pair = relx_gold_pair(record, other, gold_cuts) if other is not None else None
        if pair is None:
            skipped += 1
        else:
            pairs.append(pair)
    if skipped:
        logger.warning("skipped %d RELX records without a usable entity on both sides", skipped)
    return pairs


def read_conll(path: str) -> list[tuple[list[str], list[tuple[int, int, str]]]]:
    """A CoNLL-2002 BIO file -> ``(words, [(start, end, type)])`` per sentence.

    Takes the first and last columns (token, tag); an ``I-`` tag that does not
    continue an entity of its type starts one.
    """
    sentences, words, tags = [], [], []
    with open_lines(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                if words:
                    sentences.append((words, bio_spans(tags)))
                words, tags = [], []
                continue
            cols = line.split("\t") if "\t" in line else line.split()
            if len(cols) < 2:
                raise ValueError(f"{path}:{n}: expected 'token<TAB>tag'")
            words.append(cols[0])
            tags.append(cols[-1])
    if words:
        sentences.append((words, bio_spans(tags)))
    return sentences


def load_conll_pairs(src_path: str, tgt_path: str) -> list[GoldPair]:
    """Two sentence-parallel CoNLL files -> gold pairs."""
    src, tgt = read_conll(src_path), read_conll(tgt_path)
    if len(src) != len(tgt):
        raise ValueError(f"{src_path} has {len(src)} sentences, {tgt_path} has {len(tgt)}")
    pairs = []
    for n, ((sw, ss), (tw, ts)) in enumerate(zip(src, tgt)):
        mentions = tuple(Mention(s, e, f"e{k}", t) for k, (s, e, t) in enumerate(ss))
        pairs.append(GoldPair(tuple(sw), tuple(tw), mentions, tuple(ts), (), str(n + 1)))
    return pairs


# ----------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------


@dataclass
class ProjectionScores:
    """Exact-span and token counts over a gold set."""

    sentences: int = 0
    gold: int = 0
    projected: int = 0
    exact: int = 0
    gold_tokens: int = 0
    projected_tokens: int = 0
    right_tokens: int = 0
    relation_sentences: int = 0
    both_exact: int = 0
    relations_projected: int = 0
    unaligned_pairs: int = 0
    exact_punct_insensitive: int = 0
    both_exact_punct_insensitive: int = 0
    counts: ProjectionCounts = field(default_factory=ProjectionCounts)

    def as_dict(self) -> dict:
        p, r, f1 = prf(self.exact, self.projected, self.gold)
        token_f1 = prf(self.right_tokens, self.projected_tokens, self.gold_tokens)[2]
        out = {
            "precision": round(p, 4),
            "recall": round(r, 4),
            "f1": round(f1, 4),
            "token_f1": round(token_f1, 4),
            "sentences": self.sentences,
            "gold": self.gold,
            "projected": self.projected,
            "exact": self.exact,
            "unaligned_pairs": self.unaligned_pairs,
        }
        if self.relation_sentences:
            out["both_exact"] = round(self.both_exact / self.relation_sentences, 4)
            out["relations_projected"] = round(
                self.relations_projected / self.relation_sentences, 4
            )
        p, r, f1 = prf(self.exact_punct_insensitive, self.projected, self.gold)
        lenient = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4)}
        lenient["exact"] = self.exact_punct_insensitive
        if self.relation_sentences:
            share = self.both_exact_punct_insensitive / self.relation_sentences
            lenient["both_exact"] = round(share, 4)
        out["punct_insensitive"] = lenient
        out["counts"] = vars(self.counts).copy()
        return out


def score_spans(
    predicted: Iterable[tuple[int, int, str]], gold: Iterable[tuple[int, int, str]]
) -> tuple[int, int, int, int, int, int]:
    """Exact and token matches of one sentence's labelled spans.

    Spans are ``(start, end, label)``; duplicates count once per occurrence.

    Returns:
      ``(projected, gold, exact, projected_tokens, gold_tokens, right_tokens)``.
    """
    predicted, gold = list(predicted), list(gold)
    exact = sum((Counter(predicted) & Counter(gold)).values())
    p_tok = {(t, lab) for s, e, lab in predicted for t in range(s, e)}
    g_tok = {(t, lab) for s, e, lab in gold for t in range(s, e)}
    return len(predicted), len(gold), exact, len(p_tok), len(g_tok), len(p_tok & g_tok)


def strip_edge_punctuation(
    spans: Iterable[tuple[int, int, str]], words: Sequence[str]
) -> list[tuple[int, int, str]]:
    """Spans with punctuation tokens cut off both edges (a span of punctuation only is kept).

    >>> strip_edge_punctuation([(0, 3, "PER")], [",", "Jeffrey", "Skilling", ","])
    [(1, 3, 'PER')]
    """
    return [(*(trim_span((s, e), words) or (s, e)), label) for s, e, label in spans]


def evaluate(
    pairs: Sequence[GoldPair],
    links: Sequence[Sequence[Link] | None],
    cfg: ProjectConfig,
    errors: list | None = None,
    extra_links: Sequence[Sequence[Link] | None] | None = None,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
) -> ProjectionScores:
    """Projects each pair's source gold with `project_pair` and scores it.

    Args:
      pairs: gold pairs.
      links: one link list per pair (``None`` = the pair could not be aligned).
      cfg: projection rules.
      errors: when a list is given, ``(pair, predicted, gold)`` is appended for
        every sentence with a wrong or missing span.
      extra_links: one list per pair of ``cfg.fallback_method``'s links, or
        ``None`` (then the fallback rule is skipped).
      src_lang, tgt_lang: language codes for `project_pair` (function words).
    """
    scores = ProjectionScores()
    extra_links = extra_links if extra_links is not None else [None] * len(pairs)
    for pair, pair_links, pair_extra in zip(pairs, links, extra_links, strict=True):
        scores.sentences += 1
        scores.unaligned_pairs += pair_links is None
        result = project_pair(
            pair.src_words,
            pair.tgt_words,
            pair_links,
            pair.src_mentions,
            pair.relations,
            cfg,
            pair_extra,
            src_lang,
            tgt_lang,
        )
        scores.counts.add(result.counts)
        predicted = [(m.start, m.end, m.type) for m in result.tgt_mentions]
        n_pred, n_gold, exact, p_tok, g_tok, r_tok = score_spans(predicted, pair.tgt_gold)
        scores.projected += n_pred
        scores.gold += n_gold
        scores.exact += exact
        scores.projected_tokens += p_tok
        scores.gold_tokens += g_tok
        scores.right_tokens += r_tok
        lenient = score_spans(
            strip_edge_punctuation(predicted, pair.tgt_words),
            strip_edge_punctuation(pair.tgt_gold, pair.tgt_words),
        )[2]
        scores.exact_punct_insensitive += lenient
        if pair.relations:
            scores.relation_sentences += 1
            both = exact == n_gold == len(pair.src_mentions) == n_pred
            scores.both_exact += both
            scores.both_exact_punct_insensitive += (
                lenient == n_gold == len(pair.src_mentions) == n_pred
            )
            rel = result.relations[0]
            scores.relations_projected += rel.projected
        if errors is not None and not (exact == n_gold == n_pred):
            errors.append((pair, predicted, list(pair.tgt_gold)))
    return scores


def align_pairs(
    pairs: Sequence[GoldPair], aligner, methods: Sequence[str] = ()
) -> tuple[list, dict[str, list]]:
    """Links for every pair from `WordAligner.align_corpus`.

    The whole set is aligned at once, as the pipeline's AlignWords does, so a
    preset with a statistical part (eflomal, trained on these pairs) scores
    exactly what the pipeline would produce.

    Returns:
      ``(links, by_method)``: the main method's links per pair (``None`` where
      the pair could not be aligned) and, for each of ``methods`` (which the
      aligner must compute, ``AlignConfig.also``), its links per pair.
    """
    out: list = []
    by_method: dict[str, list] = {m: [] for m in methods}
    for r in aligner.align_corpus([(list(p.src_words), list(p.tgt_words)) for p in pairs]):
        out.append(None if r.links is None else list(r.links))
        for m in methods:
            by_method[m].append(None if r.links is None else list(r.by_method[m]))
    return out, by_method


def format_error(pair: GoldPair, predicted: list, gold: list) -> str:
    """One readable line per wrong sentence (for ``--errors``)."""

    def show(words, spans):
        return "; ".join(f"{lab}=[{' '.join(words[s:e])}]" for s, e, lab in sorted(spans))

    src = [(m.start, m.end, m.type) for m in pair.src_mentions]
    return (
        f"{pair.id}\tsrc: {show(pair.src_words, src)}\tpred: {show(pair.tgt_words, predicted)}"
        f"\tgold: {show(pair.tgt_words, gold)}"
    )
