"""The README's DuckDB query, pasted as it stands, runs on a shard and returns what the rows hold."""

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from relbridge.data_specs.schema import (
    SHARD_SCHEMA,
    Mention,
    ProjectedMention,
    RelationInstance,
    ShardRow,
)

README = Path(__file__).resolve().parents[1] / "README.md"


def shard_rows() -> list[ShardRow]:
    src = ("Angela", "Merkel", "was", "born", "in", "Hamburg", ".")
    tgt = ("Angela", "Merkel", "wurde", "in", "Hamburg", "geboren", ".")
    born = ShardRow(
        "toy:1", "toy", "toy.tsv", 1, "en", "de", " ".join(src), " ".join(tgt), src, tgt,
        alignment=tuple((i, i) for i in range(2)) + ((5, 4),),
        src_mentions=(Mention(0, 2, "Q1", "PER", "Angela Merkel"), Mention(5, 6, "Q2", "LOC", "Hamburg")),
        tgt_mentions=(ProjectedMention(4, 5, "Q2", "LOC", "Hamburg", 1, 1.0),
                      ProjectedMention(0, 2, "Q1", "PER", "Angela Merkel", 0, 1.0)),
        relations=(RelationInstance(0, 1, "per:city_of_birth", 1, 0, projected=True),
                   RelationInstance(1, 0, "NA", 0, 1, projected=True)),
    )  # fmt: skip
    unprojected = ShardRow(
        "toy:2", "toy", "toy.tsv", 2, "en", "de", "Merkel visited Paris", "Merkel besuchte Paris",
        ("Merkel", "visited", "Paris"), ("Merkel", "besuchte", "Paris"),
        src_mentions=(Mention(0, 1, "Q1", "PER", "Merkel"), Mention(2, 3, "Q3", "LOC", "Paris")),
        relations=(RelationInstance(0, 1, "per:countries_of_residence"),),
    )  # fmt: skip
    return [born, unprojected]


def test_readme_duckdb_query_runs_on_a_shard(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    (query,) = re.findall(r"```sql\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    shards = tmp_path / "shards"
    shards.mkdir()
    table = pa.Table.from_pylist([r.to_row() for r in shard_rows()], schema=SHARD_SCHEMA)
    pq.write_table(table, shards / "part-0.parquet")
    assert "out/run1/shards/*.parquet" in query
    query = query.replace("out/run1/shards/*.parquet", str(shards / "*.parquet"))
    rows = duckdb.connect().execute(query).fetchall()
    assert rows == [
        ("toy:1", "per:city_of_birth", "Angela Merkel", "Hamburg", "Angela Merkel", "Hamburg")
    ]  # tgt_subject 1 indexes the target list, whose second mention is Merkel's projection
