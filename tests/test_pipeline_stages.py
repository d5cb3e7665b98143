"""Per-element functions and Beam transforms of the pipeline's first stages."""

import json

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from relbridge.data_specs import NA, KnowledgeBase, Mention, RelationInstance
from relbridge.data_specs.formats import BitextRecord
from relbridge.data_specs.kb_format import Entity
from relbridge.pipeline.dead_letter import DEAD_LETTER_TAG
from relbridge.pipeline.ingest import (
    IngestConfig, ReadBitext, pack_record, read_records, unpack_record,
)  # fmt: skip
from relbridge.kb import AliasMatcher, TextMentions, label_relations, resolve_mentions
from relbridge.pipeline.label import LabelConfig, LabelWithKb
from relbridge.pipeline.tokenize import Tokenize, TokenizeConfig, make_tokenizer, tokenize_pair

KB = KnowledgeBase(
    entities={
        "Q1": Entity("Q1", "PER", {"en": ("Angela Merkel", "Merkel")}),
        "Q2": Entity("Q2", "LOC", {"en": ("Hamburg",)}),
        "Q3": Entity("Q3", "ORG", {"en": ("CDU",)}),
        "Q4": Entity("Q4", "LOC", {"en": ("Paris",)}),
        "Q5": Entity("Q5", "PER", {"en": ("Paris",)}),  # Paris Hilton: an ambiguous alias
    },
    triples=frozenset({("Q1", "per:city_of_birth", "Q2"), ("Q1", "per:member_of", "Q3")}),
)


def write_kb(tmp_path):
    kb_dir = tmp_path / "kb"
    kb_dir.mkdir(exist_ok=True)
    with open(kb_dir / "entities.jsonl", "w") as f:
        f.writelines(
            json.dumps(
                {"id": e.id, "type": e.type, "aliases": {k: list(v) for k, v in e.aliases.items()}}
            )
            + "\n"
            for e in KB.entities.values()
        )
    with open(kb_dir / "triples.tsv", "w") as f:
        f.writelines(f"{s}\t{r}\t{o}\n" for s, r, o in sorted(KB.triples))
    (kb_dir / "relations.json").write_text(json.dumps({"relations": list(KB.relations)}))
    return str(kb_dir)


def test_read_records_keeps_line_numbers_and_yields_errors(tmp_path):
    corpus = tmp_path / "c.tsv"
    corpus.write_text("a\tb\nbroken line\n3\tc\td\n")
    items = list(read_records(str(corpus), IngestConfig(str(corpus), "en", "de")))
    assert [getattr(i, "line", None) for i in items] == [1, 2, 3]
    assert isinstance(items[1], ValueError) and "c.tsv:2" in str(items[1])
    assert items[2].record_id == "3"


def test_a_line_that_is_not_utf8_costs_only_that_line(tmp_path):
    corpus = tmp_path / "c.tsv"
    corpus.write_bytes("\ufeffa\tb\n".encode() + b"caf\xe9\tCaf\xe9\r\n" + "c\u2028d\tx\n".encode())
    items = list(read_records(str(corpus), IngestConfig(str(corpus), "en", "de")))
    assert [getattr(i, "line", None) for i in items] == [1, 2, 3]
    assert (items[0].src, items[0].record_id) == ("a", "")  # the byte-order mark is dropped
    assert isinstance(items[1], ValueError)
    assert "c.tsv:2: not valid UTF-8 (byte 0xe9 at byte 4" in str(items[1])
    assert items[1].raw == "caf\\xe9\tCaf\\xe9"
    assert items[2].src == "c\u2028d"  # only \n ends a line, as for wc -l


def test_text_pair_files_report_unequal_lengths(tmp_path):
    (tmp_path / "c.en").write_text("one\ntwo\n")
    (tmp_path / "c.de").write_text("eins\n")
    cfg = IngestConfig(str(tmp_path / "c"), "en", "de")
    items = list(read_records(cfg.input_files()[0], cfg))
    assert items[0].tgt == "eins"
    assert "fewer lines" in str(items[1])


def test_a_text_pair_can_be_named_file_by_file_and_unescaped(tmp_path):
    (tmp_path / "src-train.txt").write_text("Parliament &apos;s view &#124; &quot;A&quot;\n")
    (tmp_path / "tgt-train.txt").write_text("Die Sicht des Parlaments &amp; mehr\n")
    spec = f"{tmp_path / 'src-train.txt'},{tmp_path / 'tgt-train.txt'}"
    cfg = IngestConfig(spec, "en", "de", unescape=True)
    assert cfg.resolved_format == "text" and cfg.name == "src-train.txt"
    with TestPipeline() as p:
        out = p | ReadBitext(cfg)
        assert_that(
            out.records | beam.Map(lambda r: (r.src, r.tgt, r.line)),
            equal_to([('Parliament \'s view | "A"', "Die Sicht des Parlaments & mehr", 1)]),
        )
    escaped = list(read_records(cfg.input_files()[0], IngestConfig(spec, "en", "de")))
    assert escaped[0].src.startswith("Parliament &apos;s")  # only on request


def test_read_bitext_routes_bad_lines_to_dead_letters(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"src": "Hi", "tgt": "Hallo"}\n{"src": "x"}\n')
    with TestPipeline() as p:
        out = p | ReadBitext(IngestConfig(str(corpus), "en", "de"))
        assert_that(
            out.records | beam.Map(lambda r: (r.src, r.tgt, r.line)),
            equal_to([("Hi", "Hallo", 1)]),
            label="Good",
        )
        assert_that(
            out[DEAD_LETTER_TAG]
            | beam.Map(lambda d: (d["stage"], d["line"], "tgt" in d["reason"], d["record"])),
            equal_to([("ReadBitext", 2, True, {"raw": '{"src": "x"}'})]),
            label="Dead",
        )


def test_records_cross_the_pair_id_shuffle_packed_and_come_back_equal():
    plain = BitextRecord("toy", "toy.tsv", 3, "Obama was born in Hawaii .", "Obama wurde ...", "p1")
    aligned = BitextRecord(
        "docs", "m.tsv", 0, "北京 \udcff", "Peking", "d1:0", 2, "d1", (0, 1), (2,), 0.625
    )  # CJK, a lone surrogate (packing must not fail where the stages would not), sentence ids
    for record in (plain, aligned):
        packed = pack_record(record)
        assert isinstance(packed, bytes) and unpack_record(packed) == record
    assert len(pack_record(plain)) < len(repr(plain))


@pytest.mark.parametrize(
    "lang,text,expected",
    [
        ("en", "Merkel, born in Hamburg.", ["Merkel", ",", "born", "in", "Hamburg", "."]),
        ("de", "Sie  wohnt in Berlin.", ["Sie", "wohnt", "in", "Berlin", "."]),
        (
            "zh",
            "科学家猜想土卫六上存在海洋。",
            ["科学家", "猜想", "土卫六", "上", "存在", "海洋", "。"],
        ),
        ("ja", "東京は日本の首都です。", ["東京", "は", "日本", "の", "首都", "です", "。"]),
        (
            "tr",
            "Obama'nın O'Brien ile ABD’de 2019'da görüşmesi",
            ["Obama", "'nın", "O'Brien", "ile", "ABD", "’de", "2019", "'da", "görüşmesi"],
        ),
        ("en", "Obama's O'Brien", ["Obama", "'s", "O'Brien"]),
    ],
)
def test_tokenizers_per_language(lang, text, expected):
    assert make_tokenizer(lang)(text) == expected


def test_japanese_text_longer_than_sudachis_limit_is_tokenized_in_pieces():
    # SudachiPy raises on input over 49,149 bytes: a long line crashed Tokenize and extract
    from relbridge.data_specs.schema import token_offsets

    text = "東京に行った。" * 3000  # 63,000 bytes
    words = make_tokenizer("ja")(text)
    assert words[:5] == ["東京", "に", "行っ", "た", "。"] and len(words) == 5 * 3000
    assert len(token_offsets(text, words)) == len(words)


def test_tokenize_pair_rejects_overlong_sentences():
    cfg = TokenizeConfig("en", "de", max_words=3)
    record = BitextRecord("c", "f", 1, "one two three four", "eins")
    with pytest.raises(ValueError, match="4 words"):
        tokenize_pair(record, str.split, str.split, cfg)


def test_an_unknown_language_code_is_refused_when_the_config_is_built():
    with pytest.raises(ValueError, match="unknown target language code 'qq'"):
        TokenizeConfig("en", "qq")
    assert TokenizeConfig("xx", "tr").tgt_lang == "tr"  # spaCy's multi-language fallback


def test_a_language_whose_tokenizer_library_is_missing_is_refused_when_the_config_is_built():
    # spaCy knows Thai, but its tokenizer needs pythainlp: refused up front, not on every worker
    import importlib.util

    from relbridge.data_specs.tokenizer import check_language

    if importlib.util.find_spec("pythainlp") is not None:
        pytest.skip("pythainlp is installed: Thai tokenizes")
    with pytest.raises(ValueError, match="'th'.*not installed"):
        TokenizeConfig("en", "th")
    with pytest.raises(ValueError, match="'th'.*not installed"):
        make_tokenizer("th")
    check_language("th", tokenizer=False)  # the sentence splitter needs no tokenizer


def test_tokenize_transform_outputs_rows_and_dead_letters():
    records = [
        BitextRecord("c", "f", 1, "Merkel spoke .", "Merkel sprach ."),
        BitextRecord("c", "f", 2, "  ", "x"),
    ]  # no tokens
    with TestPipeline() as p:
        out = p | beam.Create(records) | Tokenize(TokenizeConfig("en", "de", max_words=2))
        assert_that(out.rows, equal_to([]), label="NoRows")
        assert_that(
            out[DEAD_LETTER_TAG] | beam.Map(lambda d: d["line"]), equal_to([1, 2]), label="Dead"
        )


def test_alias_matcher_prefers_longest_match():
    matcher = AliasMatcher(KB, "en")
    tokens = ["Angela", "Merkel", "joined", "the", "CDU", "in", "Paris"]
    found = [(c.start, c.end, c.entity_ids) for c in matcher(tokens)]
    assert found == [(0, 2, ("Q1",)), (4, 5, ("Q3",)), (6, 7, ("Q4", "Q5"))]


def test_case_insensitive_matching_finds_any_case():
    tokens = ["ANGELA", "MERKEL", "joined", "the", "cdu"]
    found = [
        (c.start, c.end, c.entity_ids) for c in AliasMatcher(KB, "en", case_sensitive=False)(tokens)
    ]
    assert found == [(0, 2, ("Q1",)), (4, 5, ("Q3",))]
    assert AliasMatcher(KB, "en")(tokens) == []  # the default matches the case as written


def test_one_word_function_word_aliases_are_not_matched_unless_capitalised():
    kb = KnowledgeBase(
        entities={
            "F1": Entity("F1", "MISC", {"en": ("It", "It (film)")}),  # a film called "It"
            "P1": Entity("P1", "PER", {"en": ("his",)}),  # a RELX-style pronoun entity
            "C1": Entity("C1", "LOC", {"en": ("US", "one of us")}),
        },
        triples=frozenset(),
    )
    tokens = ["It", "said", "his", "one", "of", "us", "met", "US", "and", "It", "(", "film", ")"]
    found = [(c.start, c.end) for c in AliasMatcher(kb, "en")(tokens)]
    assert found == [(3, 6), (7, 8), (9, 13)]  # multi-word and capitalised aliases stay
    everything = AliasMatcher(kb, "en", skip_function_words=False)(tokens)
    assert [(c.start, c.end) for c in everything] == [(0, 1), (2, 3), (3, 6), (7, 8), (9, 13)]


def test_turkish_names_with_case_suffixes_match_their_aliases():
    kb = KnowledgeBase(
        entities={
            "Q2": Entity("Q2", "LOC", {"tr": ("Ankara",)}),
            "Q3": Entity("Q3", "ORG", {"tr": ("ABD",)}),
        },
        triples=frozenset(),
    )
    tokens = make_tokenizer("tr")("ABD'nin elçisi Ankara'da")
    found = [(c.start, c.end, c.entity_ids) for c in AliasMatcher(kb, "tr")(tokens)]
    assert found == [(0, 1, ("Q3",)), (3, 4, ("Q2",))]


def test_text_mentions_match_every_kb_language_in_raw_text():
    kb = KnowledgeBase(
        entities={
            **KB.entities,
            "Q6": Entity("Q6", "LOC", {"de": ("München",)}),  # a German alias only
        },
        triples=KB.triples,
    )
    words, found = TextMentions(kb, "de")("Angela Merkel war in München und Paris.")
    assert words == ["Angela", "Merkel", "war", "in", "München", "und", "Paris", "."]
    # English aliases match German text; an alias of a PER and a LOC keeps no type
    assert found == [(0, 2, "PER"), (4, 5, "LOC"), (6, 7, "")]
    _, only_en = TextMentions(kb, "de", alias_langs=["en"])("Angela Merkel war in München.")
    assert only_en == [(0, 2, "PER")]


def test_ambiguous_aliases_are_resolved_by_kb_facts_or_dropped():
    matcher = AliasMatcher(KB, "en")
    tokens = ["Merkel", "left", "Paris"]
    mentions, ambiguous = resolve_mentions(matcher(tokens), tokens, KB, KB.relation_index(), 20)
    assert [m.kb_id for m in mentions] == ["Q1"]
    assert ambiguous == 1


def test_label_relations_labels_ordered_pairs_from_the_kb():
    mentions = [Mention(0, 1, "Q1", "PER"), Mention(3, 4, "Q2", "LOC"), Mention(5, 6, "Q1", "PER")]
    rels = label_relations(mentions, KB.relation_index())
    assert rels == [
        RelationInstance(0, 1, "per:city_of_birth", distant=True),
        RelationInstance(1, 0, NA, distant=False),
        RelationInstance(1, 2, NA, distant=False),
        RelationInstance(2, 1, "per:city_of_birth", distant=True),
    ]


def test_label_with_kb_transform(tmp_path):
    kb_dir = write_kb(tmp_path)
    record = BitextRecord(
        "c", "f", 1, "Merkel was born in Hamburg .", "Merkel wurde in Hamburg geboren ."
    )
    row = tokenize_pair(record, str.split, str.split, TokenizeConfig("en", "de"))
    with TestPipeline() as p:
        out = p | beam.Create([row]) | LabelWithKb(LabelConfig(kb_dir, "en"))
        assert_that(
            out
            | beam.Map(
                lambda r: (
                    [m.kb_id for m in r.src_mentions],
                    [(x.subject, x.object, x.label) for x in r.relations],
                )
            ),
            equal_to([(["Q1", "Q2"], [(0, 1, "per:city_of_birth"), (1, 0, NA)])]),
        )


def test_a_relative_corpus_names_its_files_absolutely(tmp_path, monkeypatch):
    """From any working directory, one file has one name: a refresh started elsewhere found
    none of its earlier dead letters and wrote every bad line again; and Beam's local match
    found nothing for a relative glob without a folder."""
    from relbridge.pipeline.align_sentences import AlignSentencesConfig

    for name in ("a.tsv", "b.tsv", "c.en", "c.de", "docs.tsv"):
        (tmp_path / name).write_text("x\ty\n")
    monkeypatch.chdir(tmp_path)
    assert IngestConfig("*.tsv", "en", "de").input_files() == [
        str(tmp_path / "a.tsv"), str(tmp_path / "b.tsv"), str(tmp_path / "docs.tsv")
    ]  # fmt: skip
    assert IngestConfig("c", "en", "de").input_files() == [f"{tmp_path}/c.en\t{tmp_path}/c.de"]
    assert IngestConfig("c.en,c.de", "en", "de").input_files() == [
        f"{tmp_path}/c.en\t{tmp_path}/c.de"
    ]
    cfg = IngestConfig("a.tsv", "en", "de")
    (item,) = read_records(cfg.input_files()[0], cfg)
    assert item.source_file == str(tmp_path / "a.tsv")
    docs = AlignSentencesConfig("docs.tsv", "en", "de")
    assert docs.input_files() == [str(tmp_path / "docs.tsv")] and docs.name == "docs"
