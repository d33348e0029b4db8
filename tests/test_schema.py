"""The schema a `SessionTracer` writes is the published tracing_v3 schema of the fixture, object for object."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from helpers import FIXTURE_COUNTS, FIXTURE_DB
from synth_cli.errors import TraceStoreError
from synth_cli.store import schema
from synth_cli.tracing.events import EnvironmentEvent
from synth_cli.tracing.models import LLMCallRecord, LLMUsage
from synth_cli.store.reader import TraceStore
from synth_cli.tracing.tracer import SessionTracer

#: sha256 of m001_initial's DDL as shipped (tables, indexes, views joined by "\n;\n")
M001_DIGEST = "4229a516f6306a2d8d7babb3c93c8a0ea96e14c38e5c77baf725e595be0d49c8"


def _fixture_conn() -> sqlite3.Connection:
    return sqlite3.connect(f"file:{FIXTURE_DB}?mode=ro", uri=True)


def _norm(sql: str | None) -> str | None:
    if sql is None:
        return None
    sql = re.sub(r"\s+", " ", sql).strip()
    return sql.replace("( ", "(").replace(" )", ")")


def _snapshot(conn: sqlite3.Connection) -> dict:
    """Tables and views with their columns (name, declared type, not null, pk, in order), indexes, and SQL."""
    objects = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE tbl_name NOT LIKE '\\_synth%' ESCAPE '\\' "
        "AND name NOT LIKE '\\_synth%' ESCAPE '\\' "
        "AND name NOT LIKE 'sqlite_stat%' ORDER BY type, name").fetchall()
    tables = {}
    indexes = {}
    sql = {}
    for kind, name, _table, text in objects:
        sql[(kind, name)] = _norm(text)
        if kind in ("table", "view"):
            tables[name] = (kind, [tuple(r[1:6]) for r in conn.execute(f'PRAGMA table_info("{name}")')])
    for name in [n for (k, n) in sql if k == "table"]:
        for row in conn.execute(f'PRAGMA index_list("{name}")'):
            index_name, unique, origin = row[1], row[2], row[3]
            columns = [r[2] for r in conn.execute(f'PRAGMA index_info("{index_name}")')]
            indexes[index_name] = (name, tuple(columns), unique, origin)
    return {"tables": tables, "indexes": indexes, "sql": sql}


@pytest.fixture
def written_db(tmp_path) -> Path:
    path = tmp_path / "written.db"
    with SessionTracer(path) as tracer:
        tracer.create_experiment("exp_1", "baseline")
        with tracer.session(experiment_id="exp_1"):
            with tracer.timestep("step_0", turn_number=0):
                tracer.record_message("hello", message_type="user")
                tracer.record_llm_call(LLMCallRecord(call_id="c1", model_name="m", provider="p",
                                                     usage=LLMUsage(10, 2, 12, cost_usd=0.05), latency_ms=30))
                tracer.record_event(EnvironmentEvent(system_instance_id="env", reward=1.0))
    return path


def test_same_tables_columns_indexes_and_views_as_fixture(written_db):
    fixture = _snapshot(_fixture_conn())
    written = _snapshot(sqlite3.connect(written_db))
    assert set(fixture["tables"]) == {
        "experiments", "systems", "system_versions", "experimental_systems", "session_traces", "session_timesteps",
        "events", "messages", "model_usage_stats", "session_summary", "experiment_overview"}
    assert written["tables"] == fixture["tables"]          # names, kinds, columns + declared types in order
    assert written["indexes"] == fixture["indexes"]        # names, tables, columns, uniqueness, origin
    assert written["sql"] == fixture["sql"]                # the DDL itself, up to whitespace
    assert len(fixture["indexes"]) == 19 + 7               # 19 named, 7 automatic (primary keys, UNIQUE)


def test_schema_module_matches_fixture_sql():
    fixture = _snapshot(_fixture_conn())["sql"]
    for name, ddl in schema.M001_TABLES.items():
        assert _norm(ddl) == fixture[("table", name)]
    for name, ddl in schema.M001_INDEXES.items():
        assert _norm(ddl) == fixture[("index", name)]
    for name, ddl in schema.M001_VIEWS.items():
        assert _norm(ddl) == fixture[("view", name)]


def test_the_shipped_migration_m001_is_frozen():
    """m001's DDL is pinned: a schema change is a new migration, never an edit of a shipped one."""
    import hashlib

    statements = [*schema.M001_TABLES.values(), *schema.M001_INDEXES.values(), *schema.M001_VIEWS.values()]
    digest = hashlib.sha256("\n;\n".join(statements).encode()).hexdigest()
    assert digest == M001_DIGEST
    with pytest.raises(TypeError):
        schema.M001_TABLES["events"] = "CREATE TABLE events (x)"  # read-only at run time too


def test_the_shipped_migration_m003_is_frozen():
    import hashlib

    digest = hashlib.sha256("\n;\n".join(schema.M003_EVENT_FIGURES).encode()).hexdigest()
    assert digest == "0cb185e1248d3ed220ed932faa90c566bf8c8b0d104c6b3c679b577a52914fe8"


def test_views_answer_in_dollars(written_db):
    conn = sqlite3.connect(written_db)
    usage = conn.execute("SELECT model_name, provider, usage_count, total_tokens, total_cost_usd, avg_latency_ms "
                         "FROM model_usage_stats").fetchall()
    assert usage == [("m", "p", 1, 12, 0.05, 30.0)]
    summary = conn.execute("SELECT num_timesteps, num_events, num_messages, experiment_name, unique_models_used,"
                           " total_cost_usd FROM session_summary").fetchall()
    assert summary == [(1, 2, 1, "baseline", 1, 0.05)]
    overview = conn.execute("SELECT experiment_id, session_count, total_events, total_messages,"
                            " avg_timesteps_per_session FROM experiment_overview").fetchall()
    assert overview == [("exp_1", 1, 2, 1, 1.0)]


def test_migrations_recorded_once(written_db):
    conn = sqlite3.connect(written_db)
    names = [r[0] for r in conn.execute("SELECT name FROM _synth_migrations ORDER BY rowid")]
    assert names == [fn.__name__ for fn in schema.MIGRATIONS] == ["m001_initial", "m002_events_call_records",
                                                                    "m003_event_figures"]
    SessionTracer(written_db).close()
    assert conn.execute("SELECT count(*) FROM _synth_migrations").fetchone()[0] == len(schema.MIGRATIONS)


def test_migration_names_are_unique():
    with pytest.raises(ValueError, match="duplicate migration"):
        schema.migration(schema.m001_initial)
    assert len(schema.MIGRATIONS) == 3


def test_adopts_a_published_db_without_touching_its_data(tmp_path):
    path = tmp_path / "published.db"
    shutil.copyfile(FIXTURE_DB, path)
    before = _snapshot(sqlite3.connect(path))
    with SessionTracer(path) as tracer:
        with tracer.session(session_id="new-session"):
            tracer.record_message("appended", message_type="user")
    conn = sqlite3.connect(path)
    after = _snapshot(conn)
    assert after == before
    assert conn.execute("SELECT count(*) FROM session_traces").fetchone()[0] == FIXTURE_COUNTS["sessions"] + 1
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == FIXTURE_COUNTS["events"]
    assert [r[0] for r in conn.execute("SELECT name FROM _synth_migrations")] == \
        ["m001_initial", "m002_events_call_records", "m003_event_figures"]


def test_earlier_generation_gets_call_records_column(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for name, ddl in schema.M001_TABLES.items():
        if name == "events":
            ddl = ddl.replace("\tcall_records TEXT,\n", "")
        conn.execute(ddl)
    conn.commit()
    assert "call_records" not in [r[1] for r in conn.execute("PRAGMA table_info(events)")]
    conn.close()
    with SessionTracer(path) as tracer:
        with tracer.session():
            tracer.record_llm_call(LLMCallRecord(call_id="x", model_name="m"))
    with TraceStore.open(path) as store:
        assert store.schema.has_call_records
        assert store.scalar("SELECT count(*) FROM events WHERE call_records IS NOT NULL") == 1


def test_readers_never_migrate(tmp_path):
    path = tmp_path / "published.db"
    shutil.copyfile(FIXTURE_DB, path)
    with TraceStore.open(path) as store:
        assert "_synth_migrations" not in store.schema.tables
    assert "_synth_migrations" not in {r[0] for r in sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master")}


def test_refuses_a_sqlite_db_of_something_else(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    conn.commit()
    conn.close()
    data = path.read_bytes()
    with pytest.raises(TraceStoreError, match="without trace tables"):
        SessionTracer(path)
    assert path.read_bytes() == data
