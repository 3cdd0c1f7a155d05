"""The pool's SQL files and query compiler, without a database."""

from __future__ import annotations

import re

import pytest

from qroll.errors import NotSerializableError, PoolQueryError
from qroll.pool.backend import Dialect, build_where, load_queries, load_schema

DIALECTS = ["sqlite", "postgresql"]


def test_both_dialects_define_the_same_named_queries():
    names = {d: set(load_queries(d)) for d in DIALECTS}
    # finish_and_claim is PostgreSQL's one-statement form; SQLite runs finish and claim instead.
    assert names["sqlite"] == names["postgresql"] - {"finish_and_claim"}
    assert {"claim", "finish", "heartbeat", "requeue_expired", "insert", "stats"} <= names["sqlite"]
    assert all(load_queries(d)[n] for d in DIALECTS for n in names[d])


@pytest.mark.parametrize("dialect", DIALECTS)
def test_schema_has_the_versioned_tables(dialect):
    statements = load_schema(dialect)
    assert any("CREATE TABLE IF NOT EXISTS qroll_tasks" in s for s in statements)
    assert "qroll_meta" in load_queries(dialect)["meta_create"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_values_are_bound_never_spliced(dialect):
    evil = "x'; DROP TABLE qroll_tasks; --"
    sql, params = build_where({"def.model.class": evil, "lease_owner": {"$in": [evil, "b"]},
                               "_id": "7"}, Dialect(dialect))
    assert evil not in sql and "DROP" not in sql
    assert params["w0"] in ('$."model"."class"', ["model", "class"])
    assert params["w1"] == f'"{evil}"' and params["w2"] == evil and params["w4"] == 7
    placeholders = re.findall(r":(w\d+)|%\((w\d+)\)s", sql)
    assert sorted(a or b for a, b in placeholders) == sorted(params)


def test_paths_index_lists_and_empty_in_matches_nothing():
    sql, params = build_where({"def.record.0": "SignalRecord", "status": {"$in": []}}, Dialect("sqlite"))
    assert params["w0"] == '$."record"[0]' and sql.endswith("AND 1 = 0")
    assert build_where({}, Dialect("postgresql")) == ("", {})
    _, pg = build_where({"filter.record.0": "S"}, Dialect("postgresql"))
    assert pg["w0"] == ["record", "0"]


def test_bad_queries_say_what_is_valid():
    with pytest.raises(PoolQueryError, match=r"unknown field 'modle'.*_id, status, priority.*def.model.class"):
        build_where({"modle": 1}, Dialect("sqlite"))
    with pytest.raises(PoolQueryError, match=r"\$regex.*\$eq, \$in, \$nin"):
        build_where({"status": {"$regex": "w.*"}}, Dialect("sqlite"))
    with pytest.raises(PoolQueryError, match="needs a list"):
        build_where({"status": {"$in": "waiting"}}, Dialect("sqlite"))
    with pytest.raises(PoolQueryError, match="'1.5' is not an integer"):
        build_where({"_id": "1.5"}, Dialect("sqlite"))
    with pytest.raises(PoolQueryError, match="empty or quoted segment"):
        build_where({"def..x": 1}, Dialect("sqlite"))
    with pytest.raises(NotSerializableError):
        build_where({"def.x": object()}, Dialect("sqlite"))
