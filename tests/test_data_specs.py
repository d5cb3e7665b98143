"""Schema, input formats, relation inventory and the RELX parser."""

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from relbridge.data_specs import (
    NA,
    SHARD_SCHEMA,
    InputError,
    Mention,
    ProjectedMention,
    RelationInstance,
    RelationInventory,
    ShardRow,
    load_kb,
    read_shards,
)
from relbridge.data_specs.formats import (
    BitextRecord,
    make_text_pair,
    parse_jsonl_pair,
    parse_tsv_pair,
)
from relbridge.data_specs.relx import parse_relx, strip_markers, words_with_spans
from relbridge.runtime.batching import length_bucketed_batches

ROW = ShardRow(
    pair_id="toy:1",
    corpus="toy",
    source_file="toy.tsv",
    line=1,
    src_lang="en",
    tgt_lang="de",
    src_text="Merkel visited Paris",
    tgt_text="Merkel besuchte Paris",
    src_tokens=("Merkel", "visited", "Paris"),
    tgt_tokens=("Merkel", "besuchte", "Paris"),
    alignment=((0, 0), (1, 1), (2, 2)),
    src_mentions=(Mention(0, 1, "Q567", "PER", "Merkel"), Mention(2, 3, "Q90", "LOC", "Paris")),
    tgt_mentions=(
        ProjectedMention(0, 1, "Q567", "PER", "Merkel", 0, 0.75),
    ),  # float32 column: use an exact binary fraction
    relations=(
        RelationInstance(0, 1, "per:visited", None, None, True, False),
        RelationInstance(1, 0, NA),
    ),
)


def test_shard_row_round_trips_through_parquet(tmp_path):
    table = pa.Table.from_pylist([ROW.to_row()], schema=SHARD_SCHEMA)
    assert table.schema.equals(SHARD_SCHEMA, check_metadata=True)
    pq.write_table(table, tmp_path / "part-0.parquet")
    rows = read_shards(str(tmp_path))
    assert rows == [ROW]
    assert rows[0].relations[0].tgt_subject is None


def test_spans_must_be_non_empty():
    with pytest.raises(ValueError, match="empty"):
        Mention(2, 2, "Q1")


def test_inventory_puts_na_first_and_round_trips(tmp_path):
    inv = RelationInventory.from_relations(["per:b", "org:a", NA, "per:b"])
    assert inv.names == (NA, "org:a", "per:b")
    assert inv.rel2id[NA] == 0 and inv.id2rel[2] == "per:b"
    inv.save(str(tmp_path / "r.json"))
    assert RelationInventory.load(str(tmp_path / "r.json")) == inv
    with pytest.raises(ValueError):
        RelationInventory(("per:b", NA))


def test_corpus_parsers_name_file_and_line():
    rec = parse_tsv_pair("7\tHello .\tHallo .\n", "c", "f.tsv", 3)
    assert rec == BitextRecord("c", "f.tsv", 3, "Hello .", "Hallo .", "7")
    assert rec.pair_id == "c:7"
    assert (
        parse_tsv_pair("a\tb", "c", "f.tsv", 1).pair_id
        == parse_tsv_pair("a\tb", "c", "g.tsv", 9).pair_id
    )
    with pytest.raises(InputError, match=r"f.tsv:4: expected 2 or 3"):
        parse_tsv_pair("only one column", "c", "f.tsv", 4)
    with pytest.raises(InputError, match=r"f.jsonl:2: invalid JSON"):
        parse_jsonl_pair("{oops", "c", "f.jsonl", 2)
    with pytest.raises(InputError, match=r"missing or non-string field\(s\): tgt"):
        parse_jsonl_pair(json.dumps({"src": "x"}), "c", "f.jsonl", 1)
    with pytest.raises(InputError, match="empty target"):
        parse_tsv_pair("x\t  ", "c", "f.tsv", 1)
    with pytest.raises(InputError, match="fewer lines"):
        make_text_pair("x", None, "c", "a.en", 5)


def test_kb_loads_tsv_and_jsonl_and_reports_bad_lines(tmp_path):
    kb_dir = tmp_path / "kb"
    kb_dir.mkdir()
    (kb_dir / "entities.tsv").write_text(
        "# id type lang alias\nQ1\tPER\ten\tAngela Merkel\nQ1\tPER\ten\tMerkel\nQ2\tLOC\tde\tBerlin\n"
    )
    (kb_dir / "triples.jsonl").write_text(
        json.dumps({"subject": "Q1", "relation": "per:city", "object": "Q2"}) + "\n"
    )
    (kb_dir / "relations.json").write_text('{"relations": ["per:city", "r"]}')
    kb = load_kb(str(kb_dir))
    assert kb.entities["Q1"].aliases == {"en": ("Angela Merkel", "Merkel")}
    assert kb.aliases("de") == {"Berlin": ["Q2"]}
    assert kb.relation_index() == {("Q1", "Q2"): ("per:city",)}
    (kb_dir / "triples.jsonl").write_text(
        "\n" + json.dumps({"subject": "Q1", "relation": "r", "object": "Q9"}) + "\n"
    )
    with pytest.raises(InputError, match=r"triples.jsonl:2: .*unknown entity Q9"):
        load_kb(str(kb_dir))
    (kb_dir / "entities.tsv").write_text("Q1\tPER\ten\n")
    with pytest.raises(InputError, match=r"entities.tsv:1: expected id, type, lang, alias"):
        load_kb(str(kb_dir))
    (kb_dir / "entities.tsv").write_bytes(b"Q1\tPER\ten\tMerkel\nQ2\tLOC\tde\tK\xf6ln\n")
    with pytest.raises(InputError, match=r"entities.tsv:2: not valid UTF-8 \(byte 0xf6"):
        load_kb(str(kb_dir))


RELX_TEXT = """17647\t"L'<e1> Sacramento Heatwave </e1>, basée en <e2> Californie </e2>."
org:stateorprovince_of_headquarters(e1,e2)


17648\t"<e1> Paris</e1>s <e2>Maire </e2> est là."
per:employee_of(e2,e1)

"""


def test_relx_markers_are_stripped_and_directions_resolved():
    first, second = list(parse_relx(RELX_TEXT.splitlines(keepends=True), "x.txt"))
    assert first.text == "L'Sacramento Heatwave, basée en Californie."
    assert (
        first.entity_text("e1") == "Sacramento Heatwave" and first.entity_text("e2") == "Californie"
    )
    rel, subj, obj = second.subject_object()
    assert rel == "per:employee_of"
    assert second.text[subj[0] : subj[1]] == "Maire" and second.text[obj[0] : obj[1]] == "Paris"
    words, spans = words_with_spans(second.text, [second.e1, second.e2])
    assert words[spans[0][0] : spans[0][1]] == ["Paris"]


def test_words_keep_their_combining_marks_and_joiners():
    # Python's \\w has no combining marks: Hindi, Thai and NFD text fell apart
    import unicodedata

    nfd = unicodedata.normalize("NFD", "José à Saint-Étienne")
    text = f"हिन्दी में {nfd} می\u200cخواهم"
    words, spans = words_with_spans(text, [(0, 6)])
    assert words == ["हिन्दी", "में", *nfd.split(), "می\u200cخواهم"]
    assert spans == [(0, 1)]


def test_relx_reports_missing_markers():
    bad = '5\t"no markers here"\nno_relation\n'
    with pytest.raises(InputError, match=r"x.txt:1: each of"):
        list(parse_relx(bad.splitlines(), "x.txt"))


@pytest.mark.parametrize("label", ["per:title(e1,e1)", "per:title(e2,e2)", "per:title"])
def test_relx_refuses_a_label_that_relates_no_two_entities(label):
    record = f'5\t"<e1> Ann </e1> met <e2> Bob </e2> ."\n{label}\n'
    with pytest.raises(InputError, match=r"x.txt:2: unknown label format"):
        list(parse_relx(record.splitlines(), "x.txt"))
    good = record.replace(label, "per:title(e2,e1)")
    assert [r.label for r in parse_relx(good.splitlines(), "x.txt")] == ["per:title(e2,e1)"]


def test_strip_markers_keeps_word_separation():
    text, spans = strip_markers("The <e1> A B </e1> met <e2> C </e2> .")
    assert text == "The A B met C ."
    assert text[slice(*spans["e1"])] == "A B" and text[slice(*spans["e2"])] == "C"


def test_batches_group_similar_lengths_and_cover_every_pair_once():
    # the trainer's sampler and finetune-aligner both batch through this
    lengths = [random.Random(k).randint(2, 60) for k in range(500)]

    def epoch(seed):
        return length_bucketed_batches(range(500), lengths, 8, random.Random(seed))

    batches = epoch(0)
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert sorted(len(b) for b in batches) == [4] + [8] * 62  # as many steps as before
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    shuffled = list(range(500))
    random.Random(0).shuffle(shuffled)
    unsorted = sum(
        len(b) * max(lengths[i] for i in b) for b in (shuffled[k : k + 8] for k in range(0, 500, 8))
    )
    assert padded < 0.75 * unsorted  # far less padding than random batches
    assert batches == epoch(0)  # the seed fixes the order
    assert batches != epoch(1)


def test_a_shard_without_a_column_or_damaged_is_one_error_naming_it(tmp_path):
    table = pa.Table.from_pylist([ROW.to_row()], schema=SHARD_SCHEMA)
    (tmp_path / "old").mkdir()  # older shards lack the newer columns: still read
    pq.write_table(table.drop(["doc_id", "fallback_alignment"]), tmp_path / "old" / "a.parquet")
    assert read_shards(str(tmp_path / "old")) == [ROW]
    (tmp_path / "cut").mkdir()
    pq.write_table(table.drop(["relations"]), tmp_path / "cut" / "a.parquet")
    with pytest.raises(ValueError, match=r"cut/a\.parquet: .*no column relations"):
        read_shards(str(tmp_path / "cut"))  # was a TypeError from the nulls read in its place
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.parquet").write_bytes(b"PAR1 not a shard")
    with pytest.raises(ValueError, match=r"bad/a\.parquet: not a Parquet file"):
        read_shards(str(tmp_path / "bad"))
    row = ROW.to_row()
    row["src_mentions"][0]["end"] = row["src_mentions"][0]["start"]  # an empty span
    table = pa.Table.from_pylist([row], schema=SHARD_SCHEMA)
    pq.write_table(table, tmp_path / "bad" / "a.parquet")
    with pytest.raises(ValueError, match=r"bad/a\.parquet: row 1: empty"):
        read_shards(str(tmp_path / "bad"))
