"""Scores the pipeline's projected labels against RELX target-language gold.

RELX marks both entities on both sides of each parallel record, so it is a gold
standard for what ProjectLabels writes: for every shard row whose pair id is a
RELX id, the English gold entities are looked up among the row's source
mentions, and their projections are compared with the gold target spans.
Directions are compared by role (subject, object), never by RELX's label
string, whose ``(e1,e2)`` order follows each language's word order. Span
matching and P/R/F1 are `relbridge.projection.projection_eval`'s (what
``relbridge eval-projection`` reports); only the lookup of gold entities in
shard rows is specific to the demo.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from relbridge.data_specs.relx import RelxRecord
from relbridge.data_specs.schema import ShardRow, char_span_to_words, token_offsets
from relbridge.projection.projection_eval import ROLES, score_spans
from relbridge.runtime.metrics import prf


@dataclass
class ProjectionScore:
    """Exact-span counts over the gold entities that the labeller found."""

    gold_entities: int = 0
    found_in_source: int = 0
    projected: int = 0
    exact: int = 0
    sentences: int = 0
    both_found: int = 0
    both_exact: int = 0
    relations_checked: int = 0
    relations_projected_right: int = 0

    def as_dict(self) -> dict[str, float | int]:
        p, r, f1 = prf(self.exact, self.projected, self.found_in_source)
        return {
            "sentences": self.sentences,
            "gold_entities": self.gold_entities,
            "source_mentions_found": self.found_in_source,
            "precision": round(p, 4),
            "recall": round(r, 4),
            "f1": round(f1, 4),
            "both_exact": round(self.both_exact / self.both_found, 4) if self.both_found else 0.0,
            "relation_roles_exact": round(
                self.relations_projected_right / self.relations_checked, 4
            )
            if self.relations_checked
            else 0.0,
        }


def _word_span(text: str, tokens: Sequence[str], span: tuple[int, int]) -> tuple[int, int] | None:
    if span[0] >= span[1]:
        return None
    return char_span_to_words(token_offsets(text, tokens), *span)


def score_rows(
    rows: Iterable[ShardRow], src_gold: dict[str, RelxRecord], tgt_gold: dict[str, RelxRecord]
) -> dict:
    """Scores projected target mentions (and relation roles) of RELX rows.

    Args:
      rows: shard rows whose ``pair_id`` is ``<corpus>:<RELX id>``.
      src_gold, tgt_gold: RELX records by id, source and target language.
    """
    score = ProjectionScore()
    for row in rows:
        rid = row.pair_id.split(":", 1)[1]
        if rid not in src_gold or rid not in tgt_gold:
            continue
        score.sentences += 1
        _, src_subj, src_obj = src_gold[rid].subject_object()
        _, tgt_subj, tgt_obj = tgt_gold[rid].subject_object()
        found, predicted, gold = [], [], []
        for role, src_span, tgt_span in zip(ROLES, (src_subj, src_obj), (tgt_subj, tgt_obj)):
            score.gold_entities += 1
            src_words = _word_span(row.src_text, row.src_tokens, src_span)
            index = next(
                (i for i, m in enumerate(row.src_mentions) if src_words == (m.start, m.end)), None
            )
            found.append(index)
            if index is None:
                continue
            tgt_words = _word_span(row.tgt_text, row.tgt_tokens, tgt_span)
            gold.append((*(tgt_words or (-1, -1)), role))
            projected = [
                (m.start, m.end, role) for m in row.tgt_mentions if m.source_index == index
            ]
            predicted.extend(projected[:1])
        n_pred, n_gold, exact, *_ = score_spans(predicted, gold)
        score.found_in_source += n_gold
        score.projected += n_pred
        score.exact += exact
        if None not in found:
            score.both_found += 1
            all_exact = exact == n_gold == n_pred == 2
            score.both_exact += all_exact
            tgt_of = {m.source_index: i for i, m in enumerate(row.tgt_mentions)}
            for rel in row.relations:
                if (rel.subject, rel.object) == tuple(found) and rel.distant:
                    score.relations_checked += 1
                    roles_right = (rel.tgt_subject, rel.tgt_object) == (
                        tgt_of.get(found[0]),
                        tgt_of.get(found[1]),
                    )
                    score.relations_projected_right += bool(
                        rel.projected and all_exact and roles_right
                    )
    return score.as_dict()
