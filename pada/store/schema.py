"""The run database's schema, versioned with `PRAGMA user_version`.

Each entry of `MIGRATIONS` moves the schema one version up; version N is
reached by applying the first N entries in order. `migrate` runs the missing
ones when a writer opens the run, each in its own write transaction together
with its `user_version` bump, so a crash mid-migration leaves the previous
version intact. Readers (`pada status`, `pada runs`, the dashboard's views)
never migrate: `check_schema` only reads. Never edit a released migration:
append a new one.

Layout: records are stored as the JSON of their pydantic model
(`*_json` columns) plus the few columns the dashboard filters, sorts or
aggregates on. Every table is keyed by what identifies a record within a run,
so writing a stage's records twice replaces them instead of duplicating them.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable

from pada.errors import PadaError


class StoreError(PadaError):
    """The run store cannot do what was asked (missing run, newer schema, ...)."""


def _v1_tables(conn: sqlite3.Connection) -> None:
    """The first schema: one run per database, everything keyed by iteration."""
    _execute_script(
        conn,
        """
        -- Exactly one row: the run itself and where its background process is.
        CREATE TABLE run (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            run_id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            config_json TEXT NOT NULL,
            status TEXT NOT NULL,
            iteration INTEGER,
            stage TEXT,
            pid INTEGER,
            error TEXT
        );
        -- Named counters: 'data_version' is bumped by every write transaction.
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO counters VALUES ('data_version', 0);

        CREATE TABLE stages (
            iteration INTEGER NOT NULL,
            stage TEXT NOT NULL,
            signature TEXT NOT NULL,
            done_at TEXT NOT NULL,
            PRIMARY KEY (iteration, stage)
        );
        CREATE TABLE progress (
            iteration INTEGER NOT NULL,
            stage TEXT NOT NULL,
            done INTEGER NOT NULL,
            total INTEGER,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (iteration, stage)
        );
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            level TEXT NOT NULL,
            message TEXT NOT NULL,
            iteration INTEGER,
            stage TEXT
        );

        CREATE TABLE metrics (
            iteration INTEGER NOT NULL,
            split TEXT NOT NULL,
            name TEXT NOT NULL,
            value REAL NOT NULL,
            PRIMARY KEY (iteration, split, name)
        );
        CREATE TABLE predictions (
            iteration INTEGER NOT NULL,
            split TEXT NOT NULL,
            example_id TEXT NOT NULL,
            correct INTEGER NOT NULL,
            record_json TEXT NOT NULL,
            PRIMARY KEY (iteration, split, example_id)
        );
        CREATE TABLE failures (
            iteration INTEGER NOT NULL,
            split TEXT NOT NULL,
            failure_id TEXT NOT NULL,
            record_json TEXT NOT NULL,
            PRIMARY KEY (iteration, split, failure_id)
        );
        CREATE TABLE analyses (
            iteration INTEGER NOT NULL,
            failure_id TEXT NOT NULL,
            scenario_category TEXT,
            ok INTEGER NOT NULL,
            record_json TEXT NOT NULL,
            PRIMARY KEY (iteration, failure_id)
        );

        CREATE TABLE clusterings (
            iteration INTEGER PRIMARY KEY,
            k INTEGER NOT NULL,
            embedder TEXT NOT NULL,
            inertia_curve_json TEXT NOT NULL
        );
        CREATE TABLE cluster_points (
            iteration INTEGER NOT NULL REFERENCES clusterings (iteration) ON DELETE CASCADE,
            failure_id TEXT NOT NULL,
            cluster_id INTEGER NOT NULL,
            x REAL NOT NULL,
            y REAL NOT NULL,
            PRIMARY KEY (iteration, failure_id)
        );
        CREATE TABLE patterns (
            iteration INTEGER NOT NULL,
            cluster_id INTEGER NOT NULL,
            category_name TEXT NOT NULL,
            record_json TEXT NOT NULL,
            PRIMARY KEY (iteration, cluster_id)
        );
        -- Every version of every strategy; the current one has the highest version.
        CREATE TABLE strategy_versions (
            iteration INTEGER NOT NULL,
            cluster_id INTEGER NOT NULL,
            version INTEGER NOT NULL,
            source TEXT NOT NULL,          -- drafted | edited | reverted
            author TEXT NOT NULL,
            created_at TEXT NOT NULL,
            reverted_from INTEGER,         -- the version a revert copied
            record_json TEXT NOT NULL,
            PRIMARY KEY (iteration, cluster_id, version)
        );

        -- One row per synthetic sample: its latest attempt and its status.
        CREATE TABLE samples (
            iteration INTEGER NOT NULL,
            sample_id TEXT NOT NULL,
            branch TEXT NOT NULL,
            strategy TEXT,
            based_on_example TEXT NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 1,
            n_attempts INTEGER NOT NULL DEFAULT 1,
            score REAL,                    -- the latest attempt's QC average
            status TEXT NOT NULL,
            status_author TEXT,
            status_at TEXT,
            sample_json TEXT NOT NULL,
            qc_json TEXT,
            UNIQUE (iteration, sample_id)
        );
        -- Every generation attempt of a sample with the judge's verdict on it.
        CREATE TABLE sample_attempts (
            iteration INTEGER NOT NULL,
            sample_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            sample_json TEXT NOT NULL,
            qc_json TEXT,
            score REAL,
            passed INTEGER,
            PRIMARY KEY (iteration, sample_id, attempt),
            FOREIGN KEY (iteration, sample_id) REFERENCES samples (iteration, sample_id) ON DELETE CASCADE
        );

        CREATE TABLE training_rows (
            iteration INTEGER NOT NULL,
            position INTEGER NOT NULL,
            row_id TEXT NOT NULL,
            messages_json TEXT NOT NULL,
            PRIMARY KEY (iteration, position)
        );

        CREATE TABLE llm_calls (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            iteration INTEGER,
            stage TEXT NOT NULL,
            model TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            cost_usd REAL NOT NULL,
            latency_s REAL NOT NULL,
            cache_hit INTEGER NOT NULL,
            ok INTEGER NOT NULL,
            record_json TEXT NOT NULL
        );
        """
    )


def _v2_dashboard_indexes(conn: sqlite3.Connection) -> None:
    """Indexes for the dashboard's filters and aggregates (fast on 20k-sample runs)."""
    _execute_script(
        conn,
        """
        CREATE INDEX predictions_by_correct ON predictions (iteration, split, correct);
        CREATE INDEX analyses_by_category ON analyses (iteration, scenario_category);
        CREATE INDEX cluster_points_by_cluster ON cluster_points (iteration, cluster_id);
        -- Sample filters and counts are answered from these indexes alone (score is
        -- included), and a page reads the JSON of its own 50 rows only.
        CREATE INDEX samples_by_status ON samples (iteration, status, score);
        CREATE INDEX samples_by_branch ON samples (iteration, branch, status, score);
        CREATE INDEX samples_by_strategy ON samples (iteration, strategy, status, score);
        CREATE INDEX samples_by_score ON samples (iteration, score);
        -- Covers every column `llm_usage` sums: aggregates never read the JSON rows.
        CREATE INDEX llm_calls_usage ON llm_calls (stage, model, iteration, cache_hit, ok, prompt_tokens,
                                                   completion_tokens, cost_usd, latency_s);
        CREATE INDEX llm_calls_by_iteration ON llm_calls (iteration, stage);
        CREATE INDEX events_by_iteration ON events (iteration, stage);
        """
    )


def _v3_canaries(conn: sqlite3.Connection) -> None:
    """The judge's verdicts on planted samples (pada/agents/canaries.py), apart from the real samples so
    no sample query, count or training set can ever see them. Runs made before v3 simply have none."""
    _execute_script(
        conn,
        """
        CREATE TABLE canaries (
            iteration INTEGER NOT NULL,
            canary_id TEXT NOT NULL,
            kind TEXT NOT NULL,            -- wrong_answer | format | not_span | copy | mismatch | control
            control INTEGER NOT NULL,      -- 1: a real training example shown as a sample (should pass)
            ok INTEGER NOT NULL,           -- 0: the judge gave it no score
            passed INTEGER NOT NULL,
            score REAL,
            record_json TEXT NOT NULL,
            PRIMARY KEY (iteration, canary_id)
        );
        """
    )


def _v4_taxa_and_vectors(conn: sqlite3.Connection) -> None:
    """One pattern taxonomy across iterations (pada/agents/taxonomy.py) and each clustered failure's analysis
    embedding (the cross-iteration map, the taxonomy's centroids). Runs made before v4 have neither: their
    points' `embedding` is NULL and they have no taxa, and readers fall back to per-iteration names."""
    _execute_script(
        conn,
        """
        -- float32 little-endian bytes of the unit-length vector the clustering used; NULL for older runs.
        ALTER TABLE cluster_points ADD COLUMN embedding BLOB;
        -- Each iteration's pattern (cluster) and the taxon it belongs to: a taxon is one pattern followed
        -- across iterations, named by the pattern that first showed it.
        CREATE TABLE taxa (
            iteration INTEGER NOT NULL,
            cluster_id INTEGER NOT NULL,
            taxon_id INTEGER NOT NULL,
            similarity REAL,               -- to the taxon's earlier pattern it was matched with; NULL: a new taxon
            display_name TEXT NOT NULL,
            PRIMARY KEY (iteration, cluster_id)
        );
        CREATE INDEX taxa_by_taxon ON taxa (taxon_id, iteration);
        """
    )


def _v5_llm_batches(conn: sqlite3.Connection) -> None:
    """Provider batches of LLM requests (`llm.batch`, pada/llm/batch.py), so a restarted run polls the batch
    it already paid for instead of creating another. Runs made before v5 used no batches."""
    _execute_script(
        conn,
        """
        CREATE TABLE llm_batches (
            iteration INTEGER NOT NULL,
            stage TEXT NOT NULL,           -- the requests' stage(s), '+'-joined when one call mixes several
            round INTEGER NOT NULL,        -- 1, 2, ...: the stage's batches of this iteration in creation order
            content_hash TEXT NOT NULL,    -- sha256 of the call's request keys (pada.llm.batch.request_set_hash)
            provider TEXT NOT NULL,
            batch_id TEXT NOT NULL,
            input_file_id TEXT NOT NULL,
            n_requests INTEGER NOT NULL,
            status TEXT NOT NULL,          -- the provider's: validating | in_progress | completed | failed | ...
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (iteration, stage, content_hash)
        );
        """
    )


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Run several DDL statements inside the caller's transaction.

    Not `executescript`, which COMMITs a pending transaction first and would
    break the atomicity of a migration step. `complete_statement` finds the
    statement ends the way SQLite does (ignoring `;` in comments and strings).
    """
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in migration: {statement.strip()[:80]}")


# Version N of the schema = the first N migrations applied in order.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _v1_tables,
    _v2_dashboard_indexes,
    _v3_canaries,
    _v4_taxa_and_vectors,
    _v5_llm_batches,
]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def check_schema(conn: sqlite3.Connection, db_path: object) -> int:
    """The version of a PaDA run database, or a one-line `StoreError` for anything else; reads only.

    Refused: a file SQLite cannot read, an empty file or database (`RunStore.create` renames a database into
    place only once it is complete), any SQLite file without PaDA's `run` table (someone else's
    database: left byte-identical, never migrated), and a schema newer than this code.
    """
    try:
        version = schema_version(conn)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as err:  # e.g. "file is not a database"
        raise StoreError(f"{db_path} is not a readable run database: {err}") from err
    if version == 0 and not tables:
        what = "an empty file" if _size(db_path) == 0 else "an empty SQLite database"
        raise StoreError(f"{db_path} is {what}, not a PaDA run database (its creation never finished?); "
                         "move it away or delete its run directory")
    if version > SCHEMA_VERSION:
        raise StoreError(f"run database {db_path} has schema v{version}, newer than this PaDA Studio "
                         f"(v{SCHEMA_VERSION}); upgrade PaDA Studio to open it")
    if version == 0 or "run" not in tables:
        shown = ", ".join(sorted(tables)[:4]) + (", ..." if len(tables) > 4 else "")
        raise StoreError(f"{db_path} is an SQLite database but not a PaDA run (tables: {shown}); "
                         "left untouched")
    return version


def _size(path: object) -> int | None:
    try:
        return os.path.getsize(str(path))
    except OSError:
        return None


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the database up to `target` (default: the latest); return the version reached.

    `conn` must be in autocommit mode (`isolation_level=None`). Each step runs
    in a `BEGIN IMMEDIATE` transaction that re-reads the version first, so two
    processes opening the same old run do not both migrate it. A version-0
    database that already has tables is someone else's: refused, untouched.
    """
    if schema_version(conn) == 0 and conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
        raise StoreError("refusing to add PaDA's tables to a database that has tables of its own")
    if schema_version(conn) > SCHEMA_VERSION:
        raise StoreError(
            f"run database schema v{schema_version(conn)} is newer than this PaDA Studio "
            f"(v{SCHEMA_VERSION}); upgrade PaDA Studio to open it"
        )
    while (current := schema_version(conn)) < target:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = schema_version(conn)
            if current < target:
                MIGRATIONS[current](conn)
                conn.execute(f"PRAGMA user_version = {current + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return schema_version(conn)
