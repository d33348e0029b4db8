"""The `tracing_v3` schema of the published `synth-ai` 0.2.x package, as named migrations.

The tables, columns (names, declared types, order), constraints, indexes and
the three analytics views are those of a DB written by the published tracer
(see `tests/fixtures/synth-ai-0.2.4.dev2-crafter`), token for token; only the
whitespace of the stored `CREATE` statements differs.

Migrations follow the pattern of Simon Willison's `llm`: each one is a function
decorated with `@migration`, applied once, in definition order, and recorded by
name in `_synth_migrations`. The list is append-only: never edit or reorder a
migration that has shipped, add a new one. A migration gets a `query(sql, params)`
callable, so the same migrations run on a local file and on a libSQL server. They
run only when a DB is opened for writing (:func:`synth_cli.store.writers.open_writer`,
which holds the write lock around them); readers never touch the schema.

`m001_initial` creates what is missing, so it also adopts a DB written by the
published package (whose tables already exist) without touching its data.
This module never prints.
"""

from __future__ import annotations

from datetime import datetime, timezone
from types import MappingProxyType
from typing import Callable, Mapping

MIGRATIONS_TABLE = "_synth_migrations"

# FROZEN: the DDL that the shipped migration m001_initial runs, literally. Never edit these
# three mappings (a test pins their digest); change the schema with a new migration.
# Tables in dependency order (a table's foreign keys point to tables above it).
M001_TABLES: Mapping[str, str] = MappingProxyType({
    "experiments": """CREATE TABLE experiments (
	experiment_id VARCHAR NOT NULL,
	name VARCHAR NOT NULL,
	description TEXT,
	created_at DATETIME,
	updated_at DATETIME,
	configuration TEXT,
	metadata TEXT,
	PRIMARY KEY (experiment_id)
)""",
    "systems": """CREATE TABLE systems (
	system_id VARCHAR NOT NULL,
	name VARCHAR NOT NULL,
	system_type VARCHAR,
	description TEXT,
	created_at DATETIME,
	metadata TEXT,
	PRIMARY KEY (system_id)
)""",
    "session_traces": """CREATE TABLE session_traces (
	session_id VARCHAR NOT NULL,
	created_at DATETIME NOT NULL,
	num_timesteps INTEGER NOT NULL,
	num_events INTEGER NOT NULL,
	num_messages INTEGER NOT NULL,
	metadata TEXT,
	experiment_id VARCHAR,
	embedding VECTOR,
	PRIMARY KEY (session_id),
	FOREIGN KEY(experiment_id) REFERENCES experiments (experiment_id)
)""",
    "system_versions": """CREATE TABLE system_versions (
	version_id VARCHAR NOT NULL,
	system_id VARCHAR NOT NULL,
	version_number VARCHAR NOT NULL,
	commit_hash VARCHAR,
	created_at DATETIME,
	configuration TEXT,
	metadata TEXT,
	PRIMARY KEY (version_id),
	CONSTRAINT uq_system_version UNIQUE (system_id, version_number),
	FOREIGN KEY(system_id) REFERENCES systems (system_id)
)""",
    "session_timesteps": """CREATE TABLE session_timesteps (
	id INTEGER NOT NULL,
	session_id VARCHAR NOT NULL,
	step_id VARCHAR NOT NULL,
	step_index INTEGER NOT NULL,
	turn_number INTEGER,
	started_at DATETIME,
	completed_at DATETIME,
	num_events INTEGER,
	num_messages INTEGER,
	step_metadata TEXT,
	PRIMARY KEY (id),
	CONSTRAINT uq_session_step UNIQUE (session_id, step_id),
	FOREIGN KEY(session_id) REFERENCES session_traces (session_id)
)""",
    "experimental_systems": """CREATE TABLE experimental_systems (
	id INTEGER NOT NULL,
	experiment_id VARCHAR NOT NULL,
	system_id VARCHAR NOT NULL,
	version_id VARCHAR NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_experiment_system UNIQUE (experiment_id, system_id),
	FOREIGN KEY(experiment_id) REFERENCES experiments (experiment_id),
	FOREIGN KEY(system_id) REFERENCES systems (system_id),
	FOREIGN KEY(version_id) REFERENCES system_versions (version_id)
)""",
    "events": """CREATE TABLE events (
	id INTEGER NOT NULL,
	session_id VARCHAR NOT NULL,
	timestep_id INTEGER,
	event_type VARCHAR NOT NULL,
	system_instance_id VARCHAR,
	event_time FLOAT,
	message_time INTEGER,
	created_at DATETIME,
	model_name VARCHAR,
	provider VARCHAR,
	input_tokens INTEGER,
	output_tokens INTEGER,
	total_tokens INTEGER,
	cost_usd INTEGER,
	latency_ms INTEGER,
	span_id VARCHAR,
	trace_id VARCHAR,
	call_records TEXT,
	reward FLOAT,
	terminated BOOLEAN,
	truncated BOOLEAN,
	system_state_before TEXT,
	system_state_after TEXT,
	metadata TEXT,
	event_metadata TEXT,
	embedding VECTOR,
	PRIMARY KEY (id),
	CONSTRAINT check_event_type CHECK (event_type IN ('cais', 'environment', 'runtime')),
	FOREIGN KEY(session_id) REFERENCES session_traces (session_id),
	FOREIGN KEY(timestep_id) REFERENCES session_timesteps (id)
)""",
    "messages": """CREATE TABLE messages (
	id INTEGER NOT NULL,
	session_id VARCHAR NOT NULL,
	timestep_id INTEGER,
	message_type VARCHAR NOT NULL,
	content TEXT NOT NULL,
	timestamp DATETIME,
	event_time FLOAT,
	message_time INTEGER,
	metadata TEXT,
	embedding VECTOR,
	PRIMARY KEY (id),
	CONSTRAINT check_message_type CHECK (message_type IN ('user', 'assistant', 'system', 'tool_use', 'tool_result')),
	FOREIGN KEY(session_id) REFERENCES session_traces (session_id),
	FOREIGN KEY(timestep_id) REFERENCES session_timesteps (id)
)""",
})

M001_INDEXES: Mapping[str, str] = MappingProxyType({
    "idx_experiment_name": "CREATE INDEX idx_experiment_name ON experiments (name)",
    "idx_experiment_created": "CREATE INDEX idx_experiment_created ON experiments (created_at)",
    "idx_system_type": "CREATE INDEX idx_system_type ON systems (system_type)",
    "idx_system_name": "CREATE INDEX idx_system_name ON systems (name)",
    "idx_session_created": "CREATE INDEX idx_session_created ON session_traces (created_at)",
    "idx_session_experiment": "CREATE INDEX idx_session_experiment ON session_traces (experiment_id)",
    "idx_version_created": "CREATE INDEX idx_version_created ON system_versions (created_at)",
    "idx_version_system": "CREATE INDEX idx_version_system ON system_versions (system_id)",
    "idx_timestep_turn": "CREATE INDEX idx_timestep_turn ON session_timesteps (turn_number)",
    "idx_timestep_session_step": "CREATE INDEX idx_timestep_session_step ON session_timesteps (session_id, step_id)",
    "idx_experimental_system": "CREATE INDEX idx_experimental_system ON experimental_systems (experiment_id, system_id)",
    "idx_event_model": "CREATE INDEX idx_event_model ON events (model_name)",
    "idx_event_trace": "CREATE INDEX idx_event_trace ON events (trace_id)",
    "idx_event_type": "CREATE INDEX idx_event_type ON events (event_type)",
    "idx_event_created": "CREATE INDEX idx_event_created ON events (created_at)",
    "idx_event_session_step": "CREATE INDEX idx_event_session_step ON events (session_id, timestep_id)",
    "idx_message_type": "CREATE INDEX idx_message_type ON messages (message_type)",
    "idx_message_session_step": "CREATE INDEX idx_message_session_step ON messages (session_id, timestep_id)",
    "idx_message_timestamp": "CREATE INDEX idx_message_timestamp ON messages (timestamp)",
})

M001_VIEWS: Mapping[str, str] = MappingProxyType({
    "model_usage_stats": """CREATE VIEW model_usage_stats AS
        SELECT
            model_name,
            provider,
            COUNT(*) as usage_count,
            SUM(input_tokens) as total_input_tokens,
            SUM(output_tokens) as total_output_tokens,
            SUM(total_tokens) as total_tokens,
            SUM(cost_usd) / 100.0 as total_cost_usd,
            AVG(latency_ms) as avg_latency_ms,
            MIN(created_at) as first_used,
            MAX(created_at) as last_used
        FROM events
        WHERE event_type = 'cais' AND model_name IS NOT NULL
        GROUP BY model_name, provider""",
    "session_summary": """CREATE VIEW session_summary AS
        SELECT
            s.session_id,
            s.created_at,
            s.num_timesteps,
            s.num_events,
            s.num_messages,
            e.experiment_id,
            e.name as experiment_name,
            COUNT(DISTINCT ev.model_name) as unique_models_used,
            SUM(CASE WHEN ev.event_type = 'cais' THEN ev.cost_usd ELSE 0 END) / 100.0 as total_cost_usd
        FROM session_traces s
        LEFT JOIN experiments e ON s.experiment_id = e.experiment_id
        LEFT JOIN events ev ON s.session_id = ev.session_id
        GROUP BY s.session_id""",
    "experiment_overview": """CREATE VIEW experiment_overview AS
        SELECT
            e.experiment_id,
            e.name,
            e.description,
            e.created_at,
            COUNT(DISTINCT s.session_id) as session_count,
            SUM(s.num_events) as total_events,
            SUM(s.num_messages) as total_messages,
            AVG(s.num_timesteps) as avg_timesteps_per_session
        FROM experiments e
        LEFT JOIN session_traces s ON e.experiment_id = s.experiment_id
        GROUP BY e.experiment_id""",
})

EVENT_TYPES = ("cais", "environment", "runtime")
MESSAGE_TYPES = ("user", "assistant", "system", "tool_use", "tool_result")

Query = Callable[..., list]
"""`query(sql, params=()) -> list of row tuples`: how a migration talks to the DB (any backend)."""
Migration = Callable[[Query], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register `fn(query)` as the next migration, named after the function."""
    if any(m.__name__ == fn.__name__ for m in MIGRATIONS):
        raise ValueError(f"duplicate migration name {fn.__name__}")
    MIGRATIONS.append(fn)
    return fn


def _names(query: Query, kind: str) -> set[str]:
    return {r[0] for r in query("SELECT name FROM sqlite_master WHERE type = ?", (kind,))}


@migration
def m001_initial(query: Query) -> None:
    """The published tracing_v3 schema: create every table, index and view that is missing."""
    existing_tables = _names(query, "table")
    for name, ddl in M001_TABLES.items():
        if name not in existing_tables:
            query(ddl)
    existing_indexes = _names(query, "index")
    for name, ddl in M001_INDEXES.items():
        if name not in existing_indexes:
            query(ddl)
    existing_views = _names(query, "view")
    for name, ddl in M001_VIEWS.items():
        if name not in existing_views:
            query(ddl)


@migration
def m002_events_call_records(query: Query) -> None:
    """DBs of the earlier tracing_v3 generation have no `events.call_records`: add it."""
    if "call_records" not in {r[1] for r in query('PRAGMA table_info("events")')}:
        query("ALTER TABLE events ADD COLUMN call_records TEXT")


# FROZEN with m003_event_figures (a test pins it): the table of per-event figures and the two
# triggers that keep it true whoever writes the DB (see synth_cli.store.sql.FIGURES_TABLE).
M003_EVENT_FIGURES: tuple[str, ...] = (
    """CREATE TABLE _synth_event_figures (
	event_id INTEGER NOT NULL,
	llm_calls INTEGER NOT NULL,
	cost_usd REAL,
	malformed INTEGER NOT NULL,
	PRIMARY KEY (event_id)
)""",
    """CREATE TRIGGER _synth_event_figures_on_delete AFTER DELETE ON events
BEGIN
	DELETE FROM _synth_event_figures WHERE event_id = OLD.id;
END""",
    """CREATE TRIGGER _synth_event_figures_on_update AFTER UPDATE OF id, call_records ON events
BEGIN
	DELETE FROM _synth_event_figures WHERE event_id IN (OLD.id, NEW.id);
END""",
)


@migration
def m003_event_figures(query: Query) -> None:
    """Per-event figures beside `events` (LLM calls, exact cost, malformed), which the project's
    writers fill with each event, so reports need not parse every call record on every run.
    Events already in the DB get none (reports parse those): opening a big DB to append to it
    stays quick."""
    if "_synth_event_figures" not in _names(query, "table"):
        for ddl in M003_EVENT_FIGURES:
            query(ddl)


def apply_migrations(query: Query, pending: set[str] | None = None) -> list[str]:
    """Apply the migrations named in `pending` (default: all), in order, recording each; the names applied.

    The caller holds the write transaction (see `TraceWriter.ensure_schema`: `BEGIN IMMEDIATE`,
    the migrations table created and `pending` read under the lock), so a crash leaves the DB
    before or after all of them, and processes opening a new DB at once apply each exactly once.
    """
    applied: list[str] = []
    for fn in MIGRATIONS:
        name = fn.__name__
        if pending is not None and name not in pending:
            continue
        fn(query)
        query(f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (?, ?)",
              (name, datetime.now(timezone.utc).replace(tzinfo=None).isoformat(" ")))
        applied.append(name)
    return applied


__all__ = [
    "EVENT_TYPES", "M001_INDEXES", "M001_TABLES", "M001_VIEWS", "M003_EVENT_FIGURES", "MESSAGE_TYPES", "MIGRATIONS", "MIGRATIONS_TABLE",
    "apply_migrations", "migration",
]
