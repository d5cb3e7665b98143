"""AlignSentences: document pairs -> sentence pairs, the first stage of ``run --documents``.

Input is a list of document pairs, either

* a manifest TSV, one ``doc_id<TAB>src_path<TAB>tgt_path`` per line (paths on any
  Beam filesystem; a relative path is taken from the manifest's folder), or
* JSONL, one ``{"src": text, "tgt": text, "id": optional}`` per line (an id is a
  string or an integer; without one, or with null, a hash of the two texts).

Each document is split into sentences by `relbridge.text.sentences` (the splitter
raw-text extraction uses), or taken a line per sentence with ``presplit``; both
sides are embedded by the shared encoder (`alignment.sentence_embed`) and aligned
(`alignment.sentence_align`). A unit of sentences on both sides whose score
reaches ``min_score`` becomes a `BitextRecord` carrying its document id,
sentence indices and score; every other sentence ends in a dead letter: a weaker
unit as one letter, a sentence with no counterpart as one letter. So each input
sentence is in exactly one pair or one dead letter, and the ``counts`` output
(``sentence_alignment:*`` in stats.json) adds them up. Bad manifest or JSONL
lines, unreadable documents and a repeated document id are dead letters too.

    out = pbegin | AlignSentences(AlignSentencesConfig("docs.tsv", "de", "fr"))
    out["records"], out["dead_letter"], out["counts"]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.utils.shared import Shared

from relbridge.alignment.sentence_align import SentenceAlignConfig, Unit
from relbridge.alignment.sentence_embed import SentenceEmbedConfig
from relbridge.data_specs.errors import unicode_text
from relbridge.data_specs.formats import BitextRecord, InputError, decode_lines, json_record_id
from relbridge.pipeline.dead_letter import DEAD_LETTER_TAG, dead_letter
from relbridge.pipeline.ingest import binary_lines, local_absolute
from relbridge.pipeline.progress import Progress

logger = logging.getLogger(__name__)

STAGE = "AlignSentences"
COUNTS_TAG = "counts"
NO_SPACE_LANGS = frozenset({"zh", "ja", "th", "lo", "km", "my"})
"""Languages written without spaces between sentences: joined sentences get none."""


@dataclass(frozen=True)
class AlignSentencesConfig:
    """Where the document pairs are and how to align their sentences.

    Attributes:
      documents: a manifest TSV or a JSONL file (or glob; ``.jsonl``/``.json``
        names are JSONL, anything else a manifest).
      src_lang, tgt_lang: language codes (choose the splitter's rules).
      corpus_name: provenance name, part of every pair id (default: file name).
      presplit: documents hold one sentence per line already; blank lines are
        skipped, nothing else is split.
      min_score: units scoring below this go to the dead letters. The score is
        a centred cosine times a length agreement (`alignment.sentence_align`);
        the DP rarely keeps a unit under its threshold (0.1). On Text+Berg dev,
        exact units had a median of 0.54 and the wrong ones (mostly a boundary
        off by a sentence) 0.50, so a higher bar drops junk, not near misses.
      aligner: DP settings.
      embed: encoder settings (the model is the word aligner's).
    """

    documents: str
    src_lang: str
    tgt_lang: str
    corpus_name: str = ""
    presplit: bool = False
    min_score: float = 0.0
    aligner: SentenceAlignConfig = field(default_factory=SentenceAlignConfig)
    embed: SentenceEmbedConfig = field(default_factory=SentenceEmbedConfig)

    @property
    def is_jsonl(self) -> bool:
        return self.documents.lower().endswith((".jsonl", ".json", ".jsonl.gz"))

    @property
    def name(self) -> str:
        if self.corpus_name:
            return self.corpus_name
        base = os.path.basename(self.documents.rstrip("/"))
        for ext in (".gz", ".tsv", ".jsonl", ".json"):
            base = base.removesuffix(ext)
        return base or "documents"

    def input_files(self) -> list[str]:
        matches = FileSystems.match([local_absolute(self.documents)])[0].metadata_list
        if not matches:
            raise FileNotFoundError(f"no document list matches {self.documents}")
        return sorted(m.path for m in matches)


@dataclass(frozen=True)
class DocumentPair:
    """Both sides of one document, with where it was listed (file, 1-based line)."""

    doc_id: str
    source_file: str
    line: int
    src: str
    tgt: str


# ---------------------------------------------------------------------------- reading


def _read_text(path: str) -> str:
    """A whole UTF-8 document from any Beam filesystem; raises ValueError/OSError."""
    with FileSystems.open(path) as f:
        parts = []
        for piece in decode_lines(binary_lines(f), path):
            if isinstance(piece, InputError):
                raise piece
            parts.append(piece)
    return "".join(parts)


def parse_document_line(text: str, source_file: str, line: int, is_jsonl: bool) -> DocumentPair:
    """One manifest or JSONL line -> `DocumentPair` (manifest documents are read here).

    Raises:
      InputError: a malformed line, or a document file that cannot be read.
    """
    if is_jsonl:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(source_file, line, f"invalid JSON: {e.msg}") from None
        if not isinstance(obj, dict) or not all(
            isinstance(obj.get(k), str) for k in ("src", "tgt")
        ):
            raise InputError(source_file, line, 'expected {"src": text, "tgt": text, "id"?}')
        src, tgt = (unicode_text(obj[k], f'"{k}"', source_file, line) for k in ("src", "tgt"))
        doc_id = json_record_id(obj, source_file, line) or _content_id(src, tgt)
        return DocumentPair(doc_id, source_file, line, src, tgt)
    cols = text.rstrip("\r\n").split("\t")
    if len(cols) != 3 or not all(c.strip() for c in cols):
        raise InputError(source_file, line, "expected doc_id<TAB>src_path<TAB>tgt_path")
    doc_id, *paths = (c.strip() for c in cols)
    folder = FileSystems.split(source_file)[0]
    texts = []
    for path in paths:
        if not (os.path.isabs(path) or "://" in path):
            path = FileSystems.join(folder, path)
        try:
            texts.append(_read_text(path))
        except (
            OSError,
            ValueError,
        ) as e:  # Beam raises BeamIOError (an OSError) for a missing file
            raise InputError(source_file, line, f"cannot read {path}: {e}") from None
    return DocumentPair(doc_id, source_file, line, *texts)


def _content_id(src: str, tgt: str) -> str:
    return hashlib.sha1(f"{src}\x00{tgt}".encode()).hexdigest()[:16]


def split_document(text: str, lang: str, presplit: bool) -> list[str]:
    """The sentences of a document: by `relbridge.text.sentences`, or its non-blank lines."""
    if presplit:
        return [s.strip() for s in text.splitlines() if s.strip()]
    from relbridge.text.sentences import sentences

    return sentences(text, lang)


# ---------------------------------------------------------------------------- units


def unit_outputs(
    doc: DocumentPair,
    src_sents: Sequence[str],
    tgt_sents: Sequence[str],
    units: Iterable[Unit],
    cfg: AlignSentencesConfig,
) -> Iterator[BitextRecord | dict]:
    """Records for the units that pass ``min_score``; dead letters for every other sentence.

    A document pair with no sentence on either side is one dead letter, so
    that its manifest line, too, ends somewhere (and a refresh skips it).
    """
    src_join = "" if cfg.src_lang in NO_SPACE_LANGS else " "
    tgt_join = "" if cfg.tgt_lang in NO_SPACE_LANGS else " "
    if not src_sents and not tgt_sents:
        detail = {
            "corpus": cfg.name,
            "doc_id": doc.doc_id,
            "src_sentence_ids": [],
            "tgt_sentence_ids": [],
            "src": doc.src,
            "tgt": doc.tgt,
        }
        reason = f"document {doc.doc_id} has no sentence on either side"
        yield dead_letter(STAGE, reason, doc.source_file, doc.line, detail)
    for unit in units:
        src = src_join.join(src_sents[i] for i in unit.src)
        tgt = tgt_join.join(tgt_sents[j] for j in unit.tgt)
        detail = {
            "corpus": cfg.name,
            "doc_id": doc.doc_id,
            "src_sentence_ids": list(unit.src),
            "tgt_sentence_ids": list(unit.tgt),
            "src": src,
            "tgt": tgt,
            "score": round(unit.score, 4),
        }
        if not unit.src or not unit.tgt:
            side, index = ("source", unit.src[0]) if unit.src else ("target", unit.tgt[0])
            reason = f"{side} sentence {index} of document {doc.doc_id} has no counterpart"
            yield dead_letter(STAGE, reason, doc.source_file, doc.line, detail)
        elif unit.score < cfg.min_score:
            reason = f"unit score {unit.score:.3f} below --min-sentence-score {cfg.min_score}"
            yield dead_letter(STAGE, reason, doc.source_file, doc.line, detail)
        else:
            yield BitextRecord(
                corpus=cfg.name,
                source_file=doc.source_file,
                line=doc.line,
                src=src,
                tgt=tgt,
                record_id=f"{doc.doc_id}:{_span(unit.src)}:{_span(unit.tgt)}",
                doc_id=doc.doc_id,
                src_sentence_ids=unit.src,
                tgt_sentence_ids=unit.tgt,
                sentence_score=float(unit.score),
            )


def _span(indices: Sequence[int]) -> str:
    return str(indices[0]) if len(indices) == 1 else f"{indices[0]}-{indices[-1]}"


def sentence_counts(outputs: Iterable[BitextRecord | dict]) -> Counter:
    """How many sentences went into pairs and into dead letters."""
    counts = Counter()
    for item in outputs:
        ids = (
            (item.src_sentence_ids, item.tgt_sentence_ids)
            if isinstance(item, BitextRecord)
            else (item["record"]["src_sentence_ids"], item["record"]["tgt_sentence_ids"])
        )
        kind = "paired" if isinstance(item, BitextRecord) else "unaligned"
        counts[f"sentence_alignment:{kind}_sentences"] += len(ids[0]) + len(ids[1])
    return counts


# ---------------------------------------------------------------------------- DoFns


class ReadDocumentListFn(beam.DoFn):
    """Reads one manifest/JSONL file; emits `DocumentPair`s keyed by id, bad lines as dead letters."""

    def __init__(self, cfg: AlignSentencesConfig):
        self.cfg = cfg

    def process(self, path: str):
        for line, text in enumerate(decode_lines(_lines(path), path), start=1):
            try:
                if isinstance(text, InputError):
                    raise text
                if not text.strip():
                    raise InputError(path, line, "blank line")
                doc = parse_document_line(text, path, line, self.cfg.is_jsonl)
            except InputError as e:
                raw = e.raw if e.raw is not None else text.rstrip("\r\n")  # the line as read
                letter = dead_letter(STAGE, e.reason, e.source_file, e.line, {"raw": raw})
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, letter)
                continue
            yield doc.doc_id, doc


def _lines(path: str) -> Iterator[bytes]:
    with FileSystems.open(path) as f:
        yield from binary_lines(f)


class FirstDocumentFn(beam.DoFn):
    """Keeps the first listing of a document id; a repeat is a dead letter."""

    def process(self, element: tuple[str, Iterable[DocumentPair]]):
        doc_id, docs = element
        first, *repeats = sorted(docs, key=lambda d: (d.source_file, d.line))
        yield first
        for doc in repeats:
            reason = f"document id {doc_id!r} repeats {first.source_file}:{first.line}"
            letter = dead_letter(STAGE, reason, doc.source_file, doc.line, {"doc_id": doc_id})
            yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, letter)


class _SharedEncoder:
    """A weak-referenceable holder for the per-process document encoder."""

    def __init__(self, encoder):
        self.encoder = encoder


class AlignDocumentFn(beam.DoFn):
    """Splits, embeds and aligns one document pair; emits records, dead letters and counts."""

    def __init__(self, cfg: AlignSentencesConfig, shared: Shared):
        self.cfg = cfg
        self._shared = shared
        self.pairs = beam.metrics.Metrics.counter(self.__class__, "sentence_pairs")

    def setup(self):
        from relbridge.alignment.sentence_embed import DocumentEncoder

        embed = self.cfg.embed
        self._encoder = self._shared.acquire(
            lambda: _SharedEncoder(DocumentEncoder(embed)), tag=repr(embed)
        ).encoder
        self._progress = Progress(STAGE, "sentences")

    def process(self, doc: DocumentPair):
        from relbridge.alignment.sentence_align import align_sentences

        cfg = self.cfg
        src_sents = split_document(doc.src, cfg.src_lang, cfg.presplit)
        tgt_sents = split_document(doc.tgt, cfg.tgt_lang, cfg.presplit)
        src_vecs, tgt_vecs = self._encoder.embed_documents(
            [src_sents, tgt_sents], cfg.aligner.max_side
        )
        units = align_sentences(
            src_vecs.vectors,
            tgt_vecs.vectors,
            src_vecs.lengths,
            tgt_vecs.lengths,
            cfg.aligner,
            src_vecs.blocks,
            tgt_vecs.blocks,
        )
        outputs = list(unit_outputs(doc, src_sents, tgt_sents, units, cfg))
        counts = sentence_counts(outputs)
        counts.update(
            {
                "sentence_alignment:documents": 1,
                "sentence_alignment:document_sentences": len(src_sents) + len(tgt_sents),
            }
        )
        self._progress.add(len(src_sents) + len(tgt_sents))
        yield beam.pvalue.TaggedOutput(COUNTS_TAG, counts)
        for item in outputs:
            if isinstance(item, BitextRecord):
                self.pairs.inc()
                yield item
            else:
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, item)


class AlignSentences(beam.PTransform):
    """Reads document pairs and aligns their sentences.

    Args:
      cfg: where the documents are and how to align them.
      skip_documents: ``(corpus, doc_id)`` of documents an earlier run into the
        same output handled (refresh mode); they are not embedded again.

    Returns:
      ``{"records": BitextRecord, "dead_letter": dict, "counts": Counter,
      "skipped": DocumentPair}`` PCollections; the counts hold the
      ``sentence_alignment:*`` sums, ``skipped`` the documents passed over.
    """

    def __init__(
        self, cfg: AlignSentencesConfig, skip_documents: frozenset[tuple[str, str]] = frozenset()
    ):
        super().__init__()
        self.cfg = cfg
        self.skip_documents = skip_documents

    def expand(self, pbegin):
        files = self.cfg.input_files()
        logger.info("%s: %d document list(s) from %s", STAGE, len(files), self.cfg.documents)
        # (doc_id, DocumentPair); bad lines as dead letters
        listed = (
            pbegin
            | "ListDocumentFiles" >> beam.Create(files)
            | "ReadDocumentLists"
            >> beam.ParDo(ReadDocumentListFn(self.cfg)).with_outputs(DEAD_LETTER_TAG, main="docs")
        )
        # the shuffle also spreads one list's documents over the workers
        unique = (
            listed.docs
            | "GroupByDocId" >> beam.GroupByKey()
            | "FirstDocument"
            >> beam.ParDo(FirstDocumentFn()).with_outputs(DEAD_LETTER_TAG, main="docs")
        )
        # DocumentPair: new documents, and those an earlier run aligned
        done, name = self.skip_documents, self.cfg.name
        fresh, skipped = unique.docs | "SkipAlignedDocuments" >> beam.Partition(
            lambda doc, _: int((name, doc.doc_id) in done), 2
        )
        aligned = fresh | "AlignDocuments" >> beam.ParDo(
            AlignDocumentFn(self.cfg, Shared())
        ).with_outputs(DEAD_LETTER_TAG, COUNTS_TAG, main="records")
        dead = (
            listed[DEAD_LETTER_TAG],
            unique[DEAD_LETTER_TAG],
            aligned[DEAD_LETTER_TAG],
        ) | "MergeSentenceDeadLetters" >> beam.Flatten()
        return {
            "records": aligned.records,
            DEAD_LETTER_TAG: dead,
            "counts": aligned[COUNTS_TAG],
            "skipped": skipped,
        }
