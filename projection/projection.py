"""Label projection: carry source mentions and relations across a word alignment.

The per-element functions here are what the pipeline's ``ProjectLabels`` stage
(`relbridge.pipeline.project`) and ``relbridge eval-projection`` both call:

    result = project_pair(src_tokens, tgt_tokens, links, src_mentions, relations, ProjectConfig())
    result.tgt_mentions   # list[ProjectedMention], source_index -> src_mentions
    result.relations      # RelationInstance with tgt_subject/tgt_object when both project
    result.counts         # ProjectionCounts: projected / dropped / repaired ...

Spans are word offsets ``[start, end)``; links are ``(src_idx, tgt_idx)`` word
pairs. A source span is projected in six steps, each a rule that
`ProjectConfig` can switch off so its effect can be measured. `project_span`
runs them; the rules that rewrite the span's links (steps 1-3) are in
`relbridge.projection.link_rules`, the span search and trimming (steps 4-6) in
`relbridge.projection.span_search`:

1. **Verbatim span** (``verbatim_spans``): a name or number whose words occur
   unchanged (case-folded, tokenisation-insensitive) in the target is taken as
   is; with several occurrences, the one closest to the span's links wins.
   When the target has fewer copies than the source and none of the span's
   links reaches the chosen copy, this occurrence was translated (``Times of
   India`` -> ``Times de l'Inde`` beside ``India Today``) and the links decide.
2. **Verbatim anchors** (``verbatim_anchors``): otherwise, each name-like
   source word found verbatim in the target adds an anchor link, so a
   mis-aligned name word still pulls the span to the right place.
3. **Fallback links** (``fallback_method``): links of a second, denser link
   set (``extra_links``, e.g. simalign's itermax next to argmax) are added
   where they touch a word that the main links leave unlinked: a source word
   of the span (``Lebanon`` / ``Libanon``, ``playwright`` / ``Dramatiker``)
   or a target word (``Staaten`` of ``Vereinigten Staaten``), the latter only
   between content words (``his`` -> ``seine``, not also ``er``). Before
   that, a main link of the name that the second set contradicts is dropped
   (``drop_disputed``: ``Party`` -> ``bedanken``, which the second set gives
   to ``thank``). Argmax
   links are precise but one-to-one; only unlinked words borrow the denser
   links, so the precise links decide everything else. Then spelling
   (``spelling_anchor_ratio``): a name word linked to a word spelled like it
   keeps only such links (``Pakistani`` -> ``pakistanaise``, not also
   ``chaîne``), and a name word still unlinked is linked to the target word
   spelled most like it (``Lebanon`` -> ``Libanon``), unless a word outside
   the name that is linked to it spells it as well (``Lebanese`` does not).
4. **Brackets** (``bracket_spans``): a name that fills a pair of brackets
   (``( Italian Navy )``) takes what the target brackets linked to them hold
   (``( Marine italienne )``), when one of its links lands there.
   **Best contiguous span** (``span_search``): otherwise, candidate spans start and end
   on a target word linked into the source span, and cross at most
   ``max_gap`` words without such a link, nor a bracket unless the source
   name holds one (``Marine italienne ) au chantier naval`` for ``Italian
   Navy``). With ``span_objective="f1"`` the
   candidate with the best harmonic mean of *source coverage* (share of the
   source span's words linked into it) and *target purity* (mean over its
   words of ``in/(in+out)`` for words linked into the source span (``in``)
   and outside it (``out``), ``unlinked_credit`` for unlinked words, 1 for
   unlinked function words that join two target words of one source word
   (`joining_words`: ``Fondo de cohesión`` for ``Kohäsionsfonds``), 0 for
   words linked only outside) wins. So a span bridges unlinked function words
   when that covers more of the name (``política de competencia de la Unión
   Europea`` for ``European Union 's competition policy``), one-to-many and
   many-to-one links are covered, and a stray link far away, which would
   cover nothing new at the price of purity, is ignored. ``"sum"`` is the
   earlier objective: the largest summed weight (``in/(in+out)``,
   ``-outside_penalty``, ``-gap_penalty``), which prefers the larger half of a
   name split by two unlinked words. With ``span_search=False`` the baseline
   rule is used: first to last linked target word.
5. **Trim** (``trim_punctuation``): punctuation and hyphens at either edge are
   cut (a link from a name to its comma or quote is a common aligner error).
6. **Function words** (``trim_function_words``, needs the pair's languages):
   a lowercase function word of the target language (spaCy's stop list) at an
   edge of the span is cut when the name's own edge word on that side is not
   a function word and the word does not occur in the name (``der
   Arbeitsschutzausschuß``, ``del Grupo Liberal``, ``Gerichtshof in``).
   Aligners readily link articles and prepositions to the name next to them;
   a name that ends with one in the source (``University of``) keeps it, one
   that starts with one (``the Netherlands``, ``die Niederlande``) does not,
   and capitalised words (``Estados Unidos``, ``Zweiten Weltkrieg``) and
   words copied from the name (``von Wogau``) always stay. So does a word
   that is the only link of one of the name's content words (``Decision`` ->
   ``acuerdo``), since stop lists hold some content words (Spanish
   ``acuerdo``, ``estados``; Italian ``governo``, ``consiglio``), unless it
   stands next to a capitalised word of the span, where it acts as an
   article or determiner (``nuestros Estados``, ``dicho Código``).

A name that projects onto one lowercase word that is not a copy of it (``Belgium`` ->
``belgischen``, ``Community`` -> ``comunitarias``) has changed word class: the
target says it with an adjective. Under the CoNLL scheme the source's types
come from (``LOC``, ``ORG``, ``PER``; see ``derived_from``), an adjective derived
from a name is ``MISC``, as English ``Belgian`` is in the source, so the
projection takes ``derived_type``. Types outside that scheme never change.

Every projection has a confidence in [0, 1] (1 for verbatim spans; otherwise
the harmonic mean of link coverage, source coverage and target purity,
see `span_confidence`); spans below
``min_confidence`` are dropped. Two projections of non-overlapping source
mentions that overlap in the target conflict: the more confident one is kept
and the other is searched again with the kept words blocked
(``repair_conflicts``), or dropped. A relation projects only when both of its
arguments do, keeping the subject/object roles.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from relbridge.data_specs.schema import Mention, ProjectedMention, RelationInstance
from relbridge.projection.config import ProjectConfig
from relbridge.projection.link_rules import (
    NO_FUNCTION_WORDS,
    FunctionWords,
    Link,
    Span,
    anchor_links,
    choose_occurrence,
    disputed_links,
    fallback_links,
    fold,
    link_centre,
    spelled_links,
    spelling_anchors,
    translated_here,
    verbatim_occurrences,
)
from relbridge.projection.span_search import (
    best_contiguous_span,
    best_f1_span,
    bracketed_span,
    sole_translations,
    span_confidence,
    target_weights,
    trim_function_words,
    trim_span,
)

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class ProjectedSpan:
    """A target span ``[start, end)`` and how it was found.

    Attributes:
      rule: ``"verbatim"``, ``"bracket"`` (`bracketed_span`), ``"search"`` (best
        contiguous span) or ``"first_last"``.
      function_words_cut: edge words that rule 6 cut (``trim_function_words``).
    """

    start: int
    end: int
    confidence: float
    rule: str
    function_words_cut: int = 0


@dataclass
class ProjectionCounts:
    """What happened to the mentions and relations of one or more pairs.

    Pipeline counters and ``stats.json`` take these names as they are.
    """

    mentions: int = 0
    mentions_projected: int = 0
    mentions_verbatim: int = 0
    mentions_repaired: int = 0
    mentions_dropped_unaligned: int = 0
    mentions_dropped_low_confidence: int = 0
    mentions_dropped_conflict: int = 0
    mentions_retyped: int = 0
    mentions_function_words_trimmed: int = 0
    relations: int = 0
    relations_projected: int = 0
    relations_dropped: int = 0

    def add(self, other: ProjectionCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class ProjectionResult:
    """The output of `project_pair` for one sentence pair."""

    tgt_mentions: list[ProjectedMention]
    relations: list[RelationInstance]
    counts: ProjectionCounts = field(default_factory=ProjectionCounts)


# ----------------------------------------------------------------------------
# Token classes
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# Span projection
# ----------------------------------------------------------------------------


def project_span(
    span: Span,
    links: Iterable[Link],
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    cfg: ProjectConfig = ProjectConfig(),
    blocked: Sequence[bool] = (),
    extra_links: Iterable[Link] = (),
    function: FunctionWords = NO_FUNCTION_WORDS,
) -> ProjectedSpan | None:
    """Projects one source word span ``[start, end)`` into the target.

    Args:
      span: source word span ``[start, end)``.
      links: ``(src_idx, tgt_idx)`` word links of the pair.
      src_tokens, tgt_tokens: the pair's words.
      cfg: projection rules.
      blocked: optional per-target-word flags; blocked words are never part of
        the result (used to repair conflicts).
      extra_links: the denser second link set for ``fallback_links`` (used
        only when ``cfg.fallback_method`` is set).
      function: the pair's function words (rule 6 and `fallback_links`); empty = both off.

    Returns:
      The projected span with its confidence, or ``None`` when nothing links
      to the span (or only blocked words do). The confidence threshold is
      applied by the caller (`project_mentions`).
    """
    links = [(s, t) for s, t in links if 0 <= t < len(tgt_tokens)]
    aligned = bool(links)  # an unaligned pair projects verbatim names only
    is_blocked = (lambda a, b: any(blocked[a:b])) if blocked else (lambda a, b: False)
    src_words = src_tokens[span[0] : span[1]]
    if cfg.verbatim_spans:
        hits = [
            h
            for h in verbatim_occurrences(src_words, tgt_tokens, cfg.max_span_words)
            if not is_blocked(*h)
        ]
        if hits:
            same = verbatim_occurrences(src_words, src_tokens, cfg.max_span_words)
            rank = same.index(span) if span in same else 0
            mid = (span[0] + span[1]) / 2 / len(src_tokens)
            start, end = choose_occurrence(
                rank, len(same), hits, link_centre(span, links), mid, len(tgt_tokens)
            )
            if not translated_here((start, end), len(hits), len(same), span, links):
                if cfg.trim_punctuation:  # carries the name's own edge punctuation
                    start, end = trim_span((start, end), tgt_tokens, src_words) or (start, end)
                return ProjectedSpan(start, end, 1.0, "verbatim")
    extra = [(s, t) for s, t in extra_links if 0 <= t < len(tgt_tokens)]
    if cfg.drop_disputed and cfg.fallback_method and extra:
        disputed = disputed_links(span, links, extra)
        links = [link for link in links if link not in disputed]
    if cfg.verbatim_anchors:
        anchors = anchor_links(span, links, src_tokens, tgt_tokens)
        anchored = {s for s, _ in anchors}
        links = sorted({link for link in links if link[0] not in anchored} | anchors)
    if cfg.fallback_method and extra:
        borrowed = fallback_links(span, links, extra, src_tokens, tgt_tokens, function)
        links = sorted(set(links) | borrowed)
    if cfg.spelling_anchor_ratio and aligned:
        ratio = cfg.spelling_anchor_ratio
        links = spelled_links(span, links, src_tokens, tgt_tokens, ratio)
        links = sorted(set(links) | spelling_anchors(span, links, src_tokens, tgt_tokens, ratio))
    weights, inside = target_weights(span, links, len(tgt_tokens), cfg)
    bracket = bracketed_span(span, links, src_tokens, tgt_tokens) if cfg.bracket_spans else None
    if bracket is not None and not is_blocked(*bracket):
        found, rule = bracket, "bracket"
    elif cfg.span_search and cfg.span_objective == "f1":
        found = best_f1_span(span, links, src_tokens, tgt_tokens, cfg, blocked, function.tgt)
        rule = "search"
    elif cfg.span_search:
        found = best_contiguous_span(weights, inside, cfg.max_gap, blocked)
        rule = "search"
    else:
        linked = [t for t, n in enumerate(inside) if n and not (blocked and blocked[t])]
        found = (linked[0], linked[-1] + 1) if linked else None
        rule = "first_last"
    if found is None:
        return None
    if cfg.trim_punctuation:
        found = trim_span(found, tgt_tokens, src_words)
        if found is None:
            return None
    cut = 0
    if cfg.trim_function_words and function.tgt:  # no target stop list: nothing to cut
        keep = sole_translations(span, found, links, src_tokens, function.src)
        trimmed = trim_function_words(found, tgt_tokens, src_words, function, keep)
        cut = (found[1] - found[0]) - (trimmed[1] - trimmed[0])
        if cut and cfg.trim_punctuation:  # a cut word may bare a comma
            trimmed = trim_span(trimmed, tgt_tokens, src_words) or trimmed
        found = trimmed
    confidence = span_confidence(found, span, links, weights, inside, src_tokens, tgt_tokens)
    return ProjectedSpan(found[0], found[1], round(confidence, 4), rule, cut)


def _overlaps(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def project_mentions(
    src_mentions: Sequence[Mention],
    links: Iterable[Link],
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    cfg: ProjectConfig = ProjectConfig(),
    counts: ProjectionCounts | None = None,
    extra_links: Iterable[Link] = (),
    function: FunctionWords = NO_FUNCTION_WORDS,
) -> list[ProjectedMention]:
    """Projects every source mention and resolves conflicts between them.

    Rules, in order:
      * a mention with no link (and no verbatim match) is dropped (``unaligned``);
      * a projection longer than ``max_span_words`` or below ``min_confidence``
        is dropped (``low_confidence``);
      * mentions with identical source spans get identical projections;
      * two projections overlap in the target while their source spans do not
        (a conflict): the more confident one (then the earlier one) is kept;
        the other is projected again with the kept words blocked and kept if
        it passes the threshold (``repaired``), else dropped (``conflict``).
        Overlapping source mentions (nested names) may overlap in the target.

    Returns:
      Projected mentions in source order, ``source_index`` pointing into
      ``src_mentions``; at most one per source mention.
    """
    counts = counts if counts is not None else ProjectionCounts()
    links, extra_links = list(links), list(extra_links)
    spans: dict[int, ProjectedSpan] = {}
    by_source_span: dict[Span, ProjectedSpan | None] = {}
    for k, m in enumerate(src_mentions):
        counts.mentions += 1
        key = (m.start, m.end)
        if key not in by_source_span:
            by_source_span[key] = project_span(
                key, links, src_tokens, tgt_tokens, cfg, extra_links=extra_links, function=function
            )
        found = by_source_span[key]
        if found is None:
            counts.mentions_dropped_unaligned += 1
        elif found.confidence < cfg.min_confidence or found.end - found.start > cfg.max_span_words:
            counts.mentions_dropped_low_confidence += 1
        else:
            spans[k] = found

    if cfg.resolve_conflicts:
        order = sorted(spans, key=lambda k: (-spans[k].confidence, k))
        kept: list[int] = []
        for k in order:
            mk = src_mentions[k]
            rivals = [
                j
                for j in kept
                if _overlaps((spans[j].start, spans[j].end), (spans[k].start, spans[k].end))
                and not _overlaps((src_mentions[j].start, src_mentions[j].end), (mk.start, mk.end))
            ]
            if not rivals:
                kept.append(k)
                continue
            repaired = None
            if cfg.repair_conflicts:
                blocked = [False] * len(tgt_tokens)
                for j in kept:
                    if not _overlaps(
                        (src_mentions[j].start, src_mentions[j].end), (mk.start, mk.end)
                    ):
                        blocked[spans[j].start : spans[j].end] = [True] * (
                            spans[j].end - spans[j].start
                        )
                repaired = project_span(
                    (mk.start, mk.end),
                    links,
                    src_tokens,
                    tgt_tokens,
                    cfg,
                    blocked,
                    extra_links,
                    function,
                )
                if repaired is not None and (
                    repaired.confidence < cfg.min_confidence
                    or repaired.end - repaired.start > cfg.max_span_words
                ):
                    repaired = None
            if repaired is None:
                counts.mentions_dropped_conflict += 1
                del spans[k]
            else:
                counts.mentions_repaired += 1
                spans[k] = repaired
                kept.append(k)

    out = []
    for k in sorted(spans):
        m, p = src_mentions[k], spans[k]
        counts.mentions_projected += 1
        counts.mentions_verbatim += p.rule == "verbatim"
        counts.mentions_function_words_trimmed += p.function_words_cut > 0
        text = " ".join(tgt_tokens[p.start : p.end])
        kind = projected_type(p, m, src_tokens, tgt_tokens, cfg)
        counts.mentions_retyped += kind != m.type
        out.append(ProjectedMention(p.start, p.end, m.kb_id, kind, text, k, float(p.confidence)))
    return out


def _is_stem(stem: str, word: str) -> bool:
    """Whether ``stem`` is ``word`` shortened, up to its last letter (``Europa``/``European``)."""
    a, b = fold(stem), fold(word)
    if len(a) >= len(b):
        return False
    return len(os.path.commonprefix([a, b])) >= max(4, len(a) - 1)


def projected_type(
    p: ProjectedSpan,
    m: Mention,
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    cfg: ProjectConfig,
) -> str:
    """The projected mention's type, when the target changes the word class.

    ``derived_type`` for a capitalised ``derived_from`` name projected onto one
    lowercase word that is not a copy of it (``Belgium`` -> ``belgischen``).
    ``base_type`` for a ``derived_type`` mention projected onto capitalised
    words, one of them a stem of the mention's last word (``Sri Lankan`` ->
    ``Sri Lanka``). Only the last word: an English phrase ending in an
    adjective is an adjective (``Eastern European``), while the head of
    ``European Social Fund`` is ``Fund``, so ``Fondo Social Europeo`` stays
    ``MISC``. Otherwise, and for verbatim spans, the source type.
    """
    if not cfg.derived_type or p.rule == "verbatim":
        return m.type
    words, src = tgt_tokens[p.start : p.end], src_tokens[m.start : m.end]
    if m.type in cfg.derived_from and len(words) == 1:
        word = words[0]
        if (
            word == word.lower() != word.upper()  # has letters, all lowercase
            and any(c.isupper() for w in src for c in w)
            and fold(word) not in {fold(w) for w in src}
        ):
            return cfg.derived_type
    if cfg.base_type and m.type == cfg.derived_type:
        names = all(w[:1].isupper() for w in words)
        if names and any(_is_stem(t, src[-1]) for t in words):
            return cfg.base_type
    return m.type


# ----------------------------------------------------------------------------
# Relations and whole pairs
# ----------------------------------------------------------------------------


def project_relations(
    relations: Sequence[RelationInstance],
    index_map: Mapping[int, int],
    counts: ProjectionCounts | None = None,
) -> list[RelationInstance]:
    """Sets target arguments on relations whose subject and object both projected.

    Args:
      relations: relations between source mentions (indices into the source list).
      index_map: source mention index -> target mention index.
      counts: updated in place when given.

    Returns:
      The relations in the same order; ``projected=True`` with
      ``tgt_subject``/``tgt_object`` (same roles) when both arguments map,
      otherwise ``projected=False`` and both ``None``.
    """
    counts = counts if counts is not None else ProjectionCounts()
    out = []
    for rel in relations:
        counts.relations += 1
        subj, obj = index_map.get(rel.subject), index_map.get(rel.object)
        if subj is not None and obj is not None and subj != obj:
            counts.relations_projected += 1
            out.append(replace(rel, tgt_subject=subj, tgt_object=obj, projected=True))
        else:
            counts.relations_dropped += 1
            out.append(replace(rel, tgt_subject=None, tgt_object=None, projected=False))
    return out


def project_pair(
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    links: Iterable[Link] | None,
    src_mentions: Sequence[Mention],
    relations: Sequence[RelationInstance],
    cfg: ProjectConfig = ProjectConfig(),
    extra_links: Iterable[Link] | None = None,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
) -> ProjectionResult:
    """Projects one pair's mentions and relations (what ``ProjectLabels`` calls).

    Args:
      src_tokens, tgt_tokens: the pair's words.
      links: ``(src_idx, tgt_idx)`` word links; ``None`` or empty when the pair
        could not be aligned (then only verbatim spans project).
      src_mentions: source mentions, word spans ``[start, end)``.
      relations: relations between ``src_mentions`` (by index).
      cfg: projection rules.
      extra_links: links of ``cfg.fallback_method`` for the same pair (see
        `fallback_links`); ``None`` = the rule is skipped.
      src_lang, tgt_lang: language codes (``en``, ``de``) for the
        function-word rule; ``None`` = that side has no function words.

    Returns:
      A `ProjectionResult`: target mentions (``source_index`` into
      ``src_mentions``), relations with target roles, and counts.
    """
    counts = ProjectionCounts()
    function = FunctionWords.for_pair(src_lang, tgt_lang)  # rule 6 and the fallback's spill test
    tgt_mentions = project_mentions(
        src_mentions, links or (), src_tokens, tgt_tokens, cfg, counts, extra_links or (), function
    )
    index_map = {m.source_index: i for i, m in enumerate(tgt_mentions)}
    projected_relations = project_relations(relations, index_map, counts)
    return ProjectionResult(tgt_mentions, projected_relations, counts)
