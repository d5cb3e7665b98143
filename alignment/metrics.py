"""Word-alignment scoring: AER, precision and recall, and the file formats they read.

AER follows Och and Ney (2000): with hypothesis links A, sure gold links S and
possible gold links P (P includes S),

    precision = |A & P| / |A|      recall = |A & S| / |S|
    AER = 1 - (|A & S| + |A & P|) / (|A| + |S|)

summed over the whole corpus (not averaged per sentence), as awesome-align's
``tools/aer.py`` does. Gold and hypotheses are in Pharaoh format (``i-j`` sure,
``ipj`` possible); awesome-align's gold files are 1-based (``one_based=True``),
everything this package writes is 0-based.

    gold = read_pharaoh("enfr.gold", one_based=True)
    scores = alignment_scores(hyps, gold)   # AlignmentScores(aer=..., ...)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from relbridge.data_specs.formats import open_lines

Link = tuple[int, int]
_LINK = re.compile(r"^(\d+)([-p])(\d+)$")


@dataclass(frozen=True)
class GoldAlignment:
    """One sentence pair's gold links, 0-based.

    Attributes:
      sure: ``i-j`` links.
      possible: ``ipj`` links plus the sure ones (P includes S).
    """

    sure: frozenset[Link]
    possible: frozenset[Link]


@dataclass(frozen=True)
class AlignmentScores:
    """Corpus-level scores, as fractions in [0, 1]."""

    aer: float
    precision: float
    recall: float
    pairs: int
    hyp_links: int
    sure_links: int

    def as_dict(self, digits: int = 4) -> dict:
        return {k: round(v, digits) if isinstance(v, float) else v for k, v in asdict(self).items()}


def parse_pharaoh(line: str, one_based: bool = False) -> GoldAlignment:
    """Parses ``"1-1 2p3 ..."`` into 0-based sure and possible links.

    Raises:
      ValueError: a token is not ``i-j`` or ``ipj``, or an index is below the base.
    """
    shift = 1 if one_based else 0
    sure, possible = set(), set()
    for token in line.split():
        m = _LINK.match(token)
        if not m:
            raise ValueError(f"not a Pharaoh link: {token!r}")
        link = (int(m.group(1)) - shift, int(m.group(3)) - shift)
        if min(link) < 0:
            raise ValueError(f"link {token!r} is below index {shift}")
        possible.add(link)
        if m.group(2) == "-":
            sure.add(link)
    return GoldAlignment(frozenset(sure), frozenset(possible))


def read_pharaoh(path: str, one_based: bool = False) -> list[GoldAlignment]:
    """Reads one gold alignment per line; errors name ``path:line``.

    A ``sent_id<TAB>`` prefix (simalign's sample gold) is dropped.
    """
    out = []
    with open_lines(path) as f:
        for n, line in enumerate(f, 1):
            try:
                out.append(parse_pharaoh(line.split("\t", 1)[-1], one_based))
            except ValueError as e:
                raise ValueError(f"{path}:{n}: {e}") from None
    return out


def check_gold_fits(
    gold: Sequence[GoldAlignment],
    pairs: Sequence[tuple[Sequence[str], Sequence[str]]],
    path: str,
    one_based: bool = False,
) -> None:
    """Raises when a gold link points past its pair's words, naming ``path:line``.

    Scoring such a link would silently lower recall. The usual cause is 1-based
    gold read as 0-based, so the message names the flag.
    """
    shift = 1 if one_based else 0
    for n, (links, (src, tgt)) in enumerate(zip(gold, pairs), 1):
        for i, j in sorted(links.possible):
            if i >= len(src) or j >= len(tgt):
                raise ValueError(
                    f"{path}:{n}: link {i + shift}-{j + shift} is outside the pair's "
                    f"{len(src)} x {len(tgt)} words (read as {shift}-based: is "
                    f"--gold-one-based right?)"
                )


def format_pharaoh(links: Iterable[Link]) -> str:
    """``[(0, 1), (2, 2)]`` -> ``"0-1 2-2"`` (0-based)."""
    return " ".join(f"{i}-{j}" for i, j in sorted(links))


def parse_pair_line(line: str) -> tuple[list[str], list[str]]:
    """Splits a pre-tokenised ``src ||| tgt`` line into two word lists.

    Tokens are separated by single ASCII spaces; the padding around the
    separator and at the line ends is stripped (ASCII spaces only), so tokens
    made of other whitespace, such as U+3000 in some gold files, are kept and
    the word indices match the gold.

    Raises:
      ValueError: the line has no ``|||`` separator, or more than one.
    """
    parts = line.rstrip("\r\n").split("|||")
    if len(parts) != 2:
        raise ValueError(f"expected one ' ||| ' separator, found {len(parts) - 1}")
    src, tgt = (p.strip(" ") for p in parts)
    return (src.split(" ") if src else []), (tgt.split(" ") if tgt else [])


def read_pairs(path: str, limit: int | None = None) -> list[tuple[list[str], list[str]]]:
    """Reads a ``src ||| tgt`` file (see `parse_pair_line`); errors name ``path:line``."""
    out = []
    with open_lines(path) as f:
        for n, line in enumerate(f, 1):
            if limit is not None and len(out) >= limit:
                break
            try:
                out.append(parse_pair_line(line))
            except ValueError as e:
                raise ValueError(f"{path}:{n}: {e}") from None
    return out


def alignment_scores(
    hyps: Sequence[Iterable[Link] | None], gold: Sequence[GoldAlignment]
) -> AlignmentScores:
    """Corpus AER, precision and recall of ``hyps`` against ``gold`` (same order).

    A ``None`` hypothesis (a pair the aligner rejected) counts as no links.

    Raises:
      ValueError: the two lists differ in length.
    """
    if len(hyps) != len(gold):
        raise ValueError(f"{len(hyps)} hypotheses but {len(gold)} gold alignments")
    a = a_s = a_p = s = 0
    for hyp, g in zip(hyps, gold):
        links = set(hyp or ())
        a += len(links)
        s += len(g.sure)
        a_s += len(links & g.sure)
        a_p += len(links & g.possible)
    precision = a_p / a if a else 0.0
    recall = a_s / s if s else 0.0
    aer = 1.0 - (a_s + a_p) / (a + s) if a + s else 0.0
    return AlignmentScores(
        aer=aer, precision=precision, recall=recall, pairs=len(gold), hyp_links=a, sure_links=s
    )
