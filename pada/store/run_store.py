"""`RunStore`: everything a run persists, behind one small API.

Writers: the iterative loop. Readers and writers: the CLI and the dashboard.
No other module holds SQL.

Threads. Each thread that uses a `RunStore` gets its own sqlite3 connection
(kept in a `threading.local`, created on first use, `check_same_thread` left
on), so one store object may be shared across threads, e.g. cached with
`st.cache_resource` while Streamlit runs pages in several threads, but no
connection ever is. `close()` closes the calling thread's connection; other
threads' connections close when their thread ends.

Processes. The database runs in WAL mode: readers (dashboard, `pada status`)
never block the writer (the background loop) and see the last committed
state. Writers wait up to `BUSY_TIMEOUT_S` for each other. Keep write
transactions short: compute a stage's outputs first, then write them. One
process at a time runs a run's loop: it holds `runner_lock()` (`lock.py`).

Read-only views. `RunStore(path, readonly=True)` (`RunStore.open(...,
readonly=True)`, `list_runs`) opens the database with SQLite's `mode=ro`: it
never migrates, never switches the journal mode, never creates a file, and
every write raises `StoreError`. It still reads a run on a read-only disk
(falling back to `immutable=1` when SQLite cannot set up WAL shared memory
there). Only `create` initialises a database; opening a file that is not a
PaDA run (empty, foreign, newer) is a one-line `StoreError` and leaves it
byte-identical, whether read-only or not.

Writes. Every public write is one transaction. `with store.transaction():`
groups several (nesting works through savepoints) and commits all or nothing;
an exception, or a kill -9, before the end leaves none of them. Each commit
bumps `data_version()`. Saving a stage's records replaces what that stage
saved before for the same scope (iteration, split), so a re-run never
duplicates records; the docstrings name the scope.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pada.records import (
    ClusteringResult,
    ClusterPoint,
    ErrorAnalysis,
    Failure,
    LLMCall,
    Pattern,
    Prediction,
    QCResult,
    Strategy,
    SyntheticSample,
)
from pada import stages
from pada.store import layout
from pada.store import lock as runner_locks
from pada.store.schema import StoreError, check_schema, migrate
from pada.store.stored import (
    ACCEPTED_STATUSES,
    EVENT_LEVELS,
    LEAKED_STATUS,
    RUN_STATUSES,
    SAMPLE_STATUSES,
    ErrorCount,
    Event,
    FailureRow,
    MetricRow,
    RunState,
    RunSummary,
    SampleAttempt,
    StageProgress,
    StoredSample,
    StrategyVersion,
    Taxon,
    TrainingRow,
)

if TYPE_CHECKING:  # numpy is imported where vectors are read or written, keeping the CLI import-light
    import numpy as np

BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another process's write transaction
USAGE_GROUPS = ("iteration", "stage", "model", "cache_hit", "ok")
# Ids of an iteration's hand-written strategies (version 1 stored by `add_written_strategy`).
_WRITTEN_IDS = "SELECT cluster_id FROM strategy_versions WHERE iteration = ? AND version = 1 AND source = 'written'"
SAMPLE_GROUPS = ("iteration", "branch", "strategy", "status")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _page(limit: int | None, offset: int) -> tuple[str, list[int]]:
    """LIMIT/OFFSET clause; `limit=None` means all rows."""
    return " LIMIT ? OFFSET ?", [-1 if limit is None else int(limit), int(offset)]


def _check_choice(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")


def _initialise_database(run_dir: Path, config_json: str) -> None:
    """A new run's database, complete (schema and its `run` row) before it takes the name `run.db`, so whoever
    polls for `run.db` (`pada status`, the dashboard, `pada runs` on a run just starting) never opens a
    half-made, empty database; the first ordinary opening switches it to WAL."""
    with _database_written_whole(run_dir / layout.DB_NAME) as conn:
        migrate(conn)
        now = _now()
        conn.execute(
            "INSERT INTO run (id, run_id, created_at, updated_at, config_json, status) "
            "VALUES (1, ?, ?, ?, ?, 'created')",
            (run_dir.name, now, now, config_json),
        )


@contextmanager
def _database_written_whole(target: Path) -> Iterator[sqlite3.Connection]:
    """A connection to a new database that replaces `target` (os.replace) only once the block has written it.

    It is written beside `target` under a hidden partial name (the executors never copy those) and left in
    rollback-journal mode: a WAL's side files are named after the database and would not move with it, and WAL
    does not work on a network filesystem. A block that fails leaves `target` as it was."""
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}-{threading.get_ident()}")
    partial.unlink(missing_ok=True)
    conn = sqlite3.connect(partial, isolation_level=None)
    try:
        yield conn
        conn.execute("PRAGMA journal_mode = DELETE")
    except BaseException:
        conn.close()
        partial.unlink(missing_ok=True)
        raise
    conn.close()
    os.replace(partial, target)


class RunStore:
    """One run's directory and database. Get one with `RunStore.create` or `RunStore.open`.

    `readonly=True`: a view that only reads (see the module docstring); `pada status`, `pada runs`
    and the dashboard's pages use one. No opening creates a database: only `create` does.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.db_path = self.path / layout.DB_NAME
        self.readonly = readonly
        self._local = threading.local()
        self._config: dict[str, Any] | None = None
        self._conn()  # connect now: checks the file (and a writer migrates it), fails early on a bad one

    # ----------------------------------------------------------------- opening

    @classmethod
    def create(cls, config: Mapping[str, Any], runs_root: str | Path | None = None,
               run_id: str | None = None) -> RunStore:
        """Start a new run: a fresh directory under the runs root holding the config.

        `run_id` defaults to a readable, unique id such as
        `20261123-130501-arc_challenge-pada` (local time, `config["task"]`,
        `config["method"]`); `config` must be JSON-serialisable.
        """
        try:
            config_json = json.dumps(dict(config), sort_keys=True)
        except TypeError as err:
            raise ValueError(f"run config must be JSON-serialisable: {err}") from err
        root = layout.runs_root(runs_root)
        try:
            path = layout.make_run_dir(root, config, run_id)
        except FileExistsError as err:
            raise StoreError(f"run {run_id!r} already exists under {root}; pick another --run-id") from err
        _initialise_database(path, config_json)
        return cls(path)

    @classmethod
    def open(cls, run_id_or_path: str | Path, runs_root: str | Path | None = None, *,
             readonly: bool = False) -> RunStore:
        """Open an existing run by id (under the runs root) or by its directory or `run.db` path.

        `readonly=True` for commands that only look (`status`, `runs`): nothing on disk changes."""
        text = str(run_id_or_path)
        candidates = [Path(text).expanduser()]
        if "/" not in text and "\\" not in text:
            candidates.insert(0, layout.runs_root(runs_root) / text)
        for candidate in candidates:
            if candidate.name == layout.DB_NAME:
                candidate = candidate.parent
            if (candidate / layout.DB_NAME).is_file():
                return cls(candidate, readonly=readonly)
        raise StoreError(
            f"no run {text!r} under {layout.runs_root(runs_root)}; "
            "`python -m pada runs` lists the runs (or pass --runs-dir)"
        )

    @property
    def run_id(self) -> str:
        return self.path.name

    def writable(self) -> RunStore:
        """This store when it may write, else a writable one on the same run (StoreError on a read-only disk)."""
        return RunStore(self.path) if self.readonly else self

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r}{', readonly=True' if self.readonly else ''})"

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the calling thread's connection (a later call reopens one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ------------------------------------------------------------- connections

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            return self._connect_readonly()
        # mode=rw: opening never creates a missing file; only `create` makes a database.
        conn = self._sqlite("rw")
        try:
            # Check before any write: a foreign or empty file must stay byte-identical.
            check_schema(conn, self.db_path)
            try:
                conn.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
            except sqlite3.OperationalError as err:  # e.g. a read-only disk
                raise StoreError(f"cannot write run {self.run_id} ({self.db_path}): {err}; "
                                 "it can still be viewed read-only") from err
            conn.execute("PRAGMA synchronous = NORMAL")  # safe against kill -9 in WAL mode
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _sqlite(self, mode: str, immutable: bool = False) -> sqlite3.Connection:
        """A connection by URI (`mode` ro / rw / rwc), so SQLite never creates or changes what it should not."""
        uri = f"file:{urllib.parse.quote(str(self.db_path.resolve()))}?mode={mode}"
        uri += "&immutable=1" if immutable else ""
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (see `transaction`).
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.OperationalError as err:
            raise StoreError(f"cannot open run database {self.db_path}: {err}") from err
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        """`mode=ro`; on a read-only disk where SQLite cannot create the WAL's shared-memory file, `immutable=1`
        (nothing can be writing there; a WAL left behind by a crash is then not read)."""
        conn = self._sqlite("ro")
        try:
            check_schema(conn, self.db_path)
        except StoreError as err:
            conn.close()
            if not isinstance(err.__cause__, sqlite3.OperationalError) or os.access(self.path, os.W_OK):
                raise
            conn = self._sqlite("ro", immutable=True)
            try:
                check_schema(conn, self.db_path)
            except BaseException:
                conn.close()
                raise
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            self._local.depth = 0
        return conn

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row | tuple]:
        return self._conn().execute(sql, params).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes so they commit together or not at all.

        The outermost block is a `BEGIN IMMEDIATE` transaction (takes the write
        lock at once, so it cannot fail half-way on a lock); inner blocks, and
        every write method called inside, are savepoints. Use it to commit a
        stage's records together with its done marker:

            with store.transaction():
                store.save_failures(it, "validation", failures)
                store.mark_stage_done(it, "evaluate", signature)
        """
        if self.readonly:
            raise StoreError(f"run {self.run_id} is open read-only here; writing needs RunStore({str(self.path)!r})")
        conn = self._conn()
        depth = self._local.depth
        conn.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT nested_{depth}")
        self._local.depth = depth + 1
        try:
            yield
            if depth == 0:
                conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'data_version'")
                conn.execute("COMMIT")
            else:
                conn.execute(f"RELEASE nested_{depth}")
        except BaseException:
            if depth == 0:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            else:
                conn.execute(f"ROLLBACK TO nested_{depth}")
                conn.execute(f"RELEASE nested_{depth}")
            raise
        finally:
            self._local.depth = depth

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self.transaction():
            yield self._conn()

    def data_version(self) -> int:
        """A number that grows with every committed write: a cheap cache key for the dashboard."""
        return self._query("SELECT value FROM counters WHERE name = 'data_version'")[0][0]

    # ------------------------------------------------------------------- paths

    def adapter_dir(self, iteration: int) -> Path:
        """Where the trainer writes iteration `iteration`'s LoRA adapter (not created here)."""
        return self.path / "adapters" / f"iter-{iteration}"

    def cache_dir(self, name: str) -> Path:
        """A named cache directory of this run, created on demand."""
        path = self.path / "cache" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def llm_cache_dir(self) -> Path:
        """Where the LLM client caches responses, so a resumed run does not pay for them twice."""
        return self.cache_dir("llm")

    def copy_database(self, target: str | Path) -> Path:
        """Write a consistent copy of this run's database to `target`, replacing it atomically.

        SQLite's online backup, in one step: the copy is the database as of one commit, even while the run
        writes. The copy is in rollback-journal mode, not WAL: it may be put on a network filesystem, where
        WAL's shared memory does not work across machines. Nothing may have `target` open for writing."""
        target = Path(target)
        with _database_written_whole(target) as copy:
            self._conn().backup(copy)
        for suffix in ("-wal", "-shm"):  # a WAL left beside the file it replaced must never be read into it
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        return target

    # -------------------------------------------------------- run state, config

    def config(self) -> dict[str, Any]:
        """The run's config as given to `create` (a copy)."""
        if self._config is None:
            self._config = json.loads(self._run_row("config_json")[0])
        return json.loads(json.dumps(self._config))

    def state(self) -> RunState:
        return RunState(*self._run_row("run_id, status, iteration, stage, pid, error, created_at, updated_at"))

    def _run_row(self, columns: str) -> tuple:
        rows = self._query(f"SELECT {columns} FROM run")
        if not rows:  # made by a PaDA whose `create` could be killed between the database and the run row
            raise StoreError(f"{self.db_path} has no run record (its creation was interrupted); "
                             "delete its run directory")
        return tuple(rows[0])

    def _update_run(self, **fields: Any) -> None:
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._write() as conn:
            conn.execute(f"UPDATE run SET {assignments}, updated_at = ?", [*fields.values(), _now()])

    def set_status(self, status: str, error: str | None = None) -> None:
        """Set the run status (one of `RUN_STATUSES`); `error` is kept only with it (cleared otherwise)."""
        _check_choice(status, RUN_STATUSES, "run status")
        self._update_run(status=status, error=error)

    def set_current(self, iteration: int | None, stage: str | None) -> None:
        """Record where the loop is, for `pada status` and the dashboard."""
        self._update_run(iteration=iteration, stage=stage)

    def set_pid(self, pid: int | None) -> None:
        """Record (or clear) the id of the background process running this run.

        For display only: a stored pid may belong to an unrelated process once the runner is gone.
        Ask `runner()` which process runs the run before signalling one."""
        self._update_run(pid=pid)

    # ------------------------------------------------------------ the runner

    def runner_lock(self):
        """Context manager held by the process running this run's loop; `RunLocked` if another one is.

        Nested holds in one process share the lock (`python -m pada resume` takes it, then `Pipeline.run`)."""
        if self.readonly:
            raise StoreError(f"run {self.run_id} is open read-only here; running it needs a writable store")
        return runner_locks.hold(self.path, self.run_id)

    def runner(self) -> runner_locks.Runner | None:
        """The process holding this run's runner lock now (pid, start time), or None: nobody runs it."""
        return runner_locks.holder(self.path)

    def iterations(self) -> list[int]:
        """Iterations that have any stage done or metric stored, ascending."""
        rows = self._query("SELECT iteration FROM stages UNION SELECT iteration FROM metrics ORDER BY 1")
        return [row[0] for row in rows]

    # ---------------------------------------------------- stages (resume support)

    def mark_stage_done(self, iteration: int, stage: str, signature: str = "") -> None:
        """Mark a stage done; call inside the `transaction()` that wrote its records."""
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO stages (iteration, stage, signature, done_at) VALUES (?, ?, ?, ?)",
                (iteration, stage, signature, _now()),
            )

    def complete_stage(self, iteration: int, stage: str, signature: str,
                       write: Callable[[RunStore], object] | None = None) -> None:
        """Run `write(store)` (which saves the stage's records) and mark the stage done, atomically."""
        with self.transaction():
            if write is not None:
                write(self)
            self.mark_stage_done(iteration, stage, signature)

    def stage_done(self, iteration: int, stage: str, signature: str | None = None) -> bool:
        """Whether the stage is done; with `signature`, only if it was done with that signature."""
        found = self.stage_signature(iteration, stage)
        return found is not None and (signature is None or found == signature)

    def stage_signature(self, iteration: int, stage: str) -> str | None:
        rows = self._query("SELECT signature FROM stages WHERE iteration = ? AND stage = ?", (iteration, stage))
        return rows[0][0] if rows else None

    def completed_stages(self, iteration: int) -> list[str]:
        """Stages of `iteration` marked done, in the order they were (last) completed."""
        rows = self._query("SELECT stage FROM stages WHERE iteration = ? ORDER BY rowid", (iteration,))
        return [row[0] for row in rows]

    def forget_stage(self, iteration: int, stage: str) -> None:
        """Drop a stage's done marker so the loop runs it again (its records stay until replaced)."""
        with self._write() as conn:
            conn.execute("DELETE FROM stages WHERE iteration = ? AND stage = ?", (iteration, stage))

    # ------------------------------------------------------- progress and events

    def set_progress(self, iteration: int, stage: str, done: int, total: int | None = None) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO progress (iteration, stage, done, total, updated_at) VALUES (?, ?, ?, ?, ?)",
                (iteration, stage, done, total, _now()),
            )

    def progress(self, iteration: int | None = None) -> list[StageProgress]:
        where, params = ("WHERE iteration = ?", [iteration]) if iteration is not None else ("", [])
        rows = self._query(
            f"SELECT iteration, stage, done, total, updated_at FROM progress {where} ORDER BY iteration, rowid",
            params,
        )
        return [StageProgress(*row) for row in rows]

    def log_event(self, level: str, message: str, iteration: int | None = None, stage: str | None = None) -> None:
        """Append to the run's event log (what the dashboard's log panel and `pada status` show)."""
        _check_choice(level, EVENT_LEVELS, "event level")
        with self._write() as conn:
            conn.execute(
                "INSERT INTO events (at, level, message, iteration, stage) VALUES (?, ?, ?, ?, ?)",
                (_now(), level, message, iteration, stage),
            )

    def events(self, limit: int = 100, *, min_level: str | None = None,
               iteration: int | None = None) -> list[Event]:
        """The latest events, newest first."""
        clauses, params = [], []
        if min_level is not None:
            _check_choice(min_level, EVENT_LEVELS, "event level")
            levels = EVENT_LEVELS[EVENT_LEVELS.index(min_level):]  # this level and the more severe ones
            clauses.append(f"level IN ({', '.join('?' * len(levels))})")
            params += levels
        if iteration is not None:
            clauses.append("iteration = ?")
            params.append(iteration)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._query(
            f"SELECT id, at, level, message, iteration, stage FROM events {where} ORDER BY id DESC LIMIT ?",
            [*params, limit],
        )
        return [Event(*row) for row in rows]

    # ------------------------------------------------- predictions and metrics

    def save_metrics(self, iteration: int, split: str, metrics: Mapping[str, float]) -> None:
        """Replace the metrics of (iteration, split)."""
        with self._write() as conn:
            conn.execute("DELETE FROM metrics WHERE iteration = ? AND split = ?", (iteration, split))
            conn.executemany(
                "INSERT INTO metrics (iteration, split, name, value) VALUES (?, ?, ?, ?)",
                [(iteration, split, name, float(value)) for name, value in metrics.items()],
            )

    def metrics(self, split: str | None = None, name: str | None = None) -> list[MetricRow]:
        """Every metric per iteration and split (the learning-curve chart), ordered by iteration."""
        clauses, params = [], []
        for column, value in (("split", split), ("name", name)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._query(
            f"SELECT iteration, split, name, value FROM metrics {where} ORDER BY iteration, split, name", params
        )
        return [MetricRow(*row) for row in rows]

    def save_predictions(self, iteration: int, split: str, predictions: Iterable[Prediction]) -> None:
        """Replace the predictions of (iteration, split)."""
        rows = []
        for prediction in predictions:
            if prediction.split != split:
                raise ValueError(f"prediction {prediction.id} is for split {prediction.split!r}, not {split!r}")
            rows.append((iteration, split, prediction.id, int(prediction.correct), prediction.model_dump_json()))
        with self._write() as conn:
            conn.execute("DELETE FROM predictions WHERE iteration = ? AND split = ?", (iteration, split))
            conn.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?)", rows)

    def predictions(self, iteration: int, split: str, *, correct: bool | None = None,
                    limit: int | None = None, offset: int = 0) -> list[Prediction]:
        sql = "SELECT record_json FROM predictions WHERE iteration = ? AND split = ?"
        params: list[Any] = [iteration, split]
        if correct is not None:
            sql += " AND correct = ?"
            params.append(int(correct))
        page, page_params = _page(limit, offset)
        rows = self._query(sql + " ORDER BY rowid" + page, params + page_params)
        return [Prediction.model_validate_json(row[0]) for row in rows]

    def accuracy_by_iteration(self) -> list[MetricRow]:
        """Share of correct predictions per iteration and split, computed in SQL from the predictions."""
        rows = self._query(
            "SELECT iteration, split, 'accuracy', AVG(correct) FROM predictions "
            "GROUP BY iteration, split ORDER BY iteration, split"
        )
        return [MetricRow(*row) for row in rows]

    # ------------------------------------------------------ failures, analyses

    def save_failures(self, iteration: int, split: str, failures: Iterable[Failure]) -> None:
        """Replace the failures of (iteration, split)."""
        rows = []
        for failure in failures:
            if failure.split != split:
                raise ValueError(f"failure {failure.id} is for split {failure.split!r}, not {split!r}")
            rows.append((iteration, split, failure.id, failure.model_dump_json()))
        with self._write() as conn:
            conn.execute("DELETE FROM failures WHERE iteration = ? AND split = ?", (iteration, split))
            conn.executemany("INSERT INTO failures VALUES (?, ?, ?, ?)", rows)

    def failures(self, iteration: int, split: str = "validation", *,
                 limit: int | None = None, offset: int = 0) -> list[Failure]:
        page, page_params = _page(limit, offset)
        rows = self._query(
            "SELECT record_json FROM failures WHERE iteration = ? AND split = ? ORDER BY rowid" + page,
            [iteration, split, *page_params],
        )
        return [Failure.model_validate_json(row[0]) for row in rows]

    def _failure_filter(self, iteration: int, split: str, cluster_id: int | None) -> tuple[str, list[Any]]:
        sql = ("FROM failures f "
               "LEFT JOIN analyses a ON a.iteration = f.iteration AND a.failure_id = f.failure_id "
               "LEFT JOIN cluster_points c ON c.iteration = f.iteration AND c.failure_id = f.failure_id "
               "LEFT JOIN patterns p ON p.iteration = c.iteration AND p.cluster_id = c.cluster_id "
               "WHERE f.iteration = ? AND f.split = ?")
        params: list[Any] = [iteration, split]
        if cluster_id is not None:
            sql += " AND c.cluster_id = ?"
            params.append(cluster_id)
        return sql, params

    def failure_rows(self, iteration: int, split: str = "validation", *, cluster_id: int | None = None,
                     limit: int | None = 50, offset: int = 0) -> list[FailureRow]:
        """A page of failures with their analysis, cluster and pattern name (the failures page)."""
        joined, params = self._failure_filter(iteration, split, cluster_id)
        page, page_params = _page(limit, offset)
        rows = self._query(
            f"SELECT f.record_json, a.record_json, c.cluster_id, p.category_name {joined} ORDER BY f.rowid" + page,
            params + page_params,
        )
        return [
            FailureRow(
                failure=Failure.model_validate_json(failure_json),
                analysis=ErrorAnalysis.model_validate_json(analysis_json) if analysis_json else None,
                cluster_id=cluster_id_,
                category_name=category,
            )
            for failure_json, analysis_json, cluster_id_, category in rows
        ]

    def failure_count(self, iteration: int, split: str = "validation", *, cluster_id: int | None = None) -> int:
        joined, params = self._failure_filter(iteration, split, cluster_id)
        return self._query(f"SELECT COUNT(*) {joined}", params)[0][0]

    def save_analyses(self, iteration: int, analyses: Iterable[ErrorAnalysis]) -> None:
        """Replace the error analyses of `iteration` (one per failure id)."""
        rows = [(iteration, a.failure_id, a.scenario_category, int(a.ok), a.model_dump_json()) for a in analyses]
        with self._write() as conn:
            conn.execute("DELETE FROM analyses WHERE iteration = ?", (iteration,))
            conn.executemany("INSERT INTO analyses VALUES (?, ?, ?, ?, ?)", rows)

    def analyses(self, iteration: int) -> list[ErrorAnalysis]:
        rows = self._query("SELECT record_json FROM analyses WHERE iteration = ? ORDER BY rowid", (iteration,))
        return [ErrorAnalysis.model_validate_json(row[0]) for row in rows]

    def error_counts(self, by: str = "pattern", split: str = "validation") -> list[ErrorCount]:
        """Failures per category per iteration (the stacked bars), counted in SQL.

        `by="pattern"`: the named pattern of the failure's cluster ("Unclustered"
        when it has none); `by="scenario"`: the analysis's `scenario_category`
        ("Unanalysed" when it has none).
        """
        if by == "pattern":
            category = "COALESCE(p.category_name, 'Unclustered')"
        elif by == "scenario":
            category = "COALESCE(a.scenario_category, 'Unanalysed')"
        else:
            raise ValueError(f"error_counts(by={by!r}): use 'pattern' or 'scenario'")
        rows = self._query(
            f"SELECT f.iteration, {category}, COUNT(*) FROM failures f "
            "LEFT JOIN analyses a ON a.iteration = f.iteration AND a.failure_id = f.failure_id "
            "LEFT JOIN cluster_points c ON c.iteration = f.iteration AND c.failure_id = f.failure_id "
            "LEFT JOIN patterns p ON p.iteration = c.iteration AND p.cluster_id = c.cluster_id "
            "WHERE f.split = ? GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2",
            (split,),
        )
        return [ErrorCount(*row) for row in rows]

    # ------------------------------------------------------ clusters, patterns

    def save_clustering(self, iteration: int, result: ClusteringResult) -> None:
        """Replace the clustering of `iteration`: K, the elbow curve and every point's cluster and 2-D position."""
        with self._write() as conn:
            conn.execute("DELETE FROM clusterings WHERE iteration = ?", (iteration,))  # cascades to the points
            conn.execute(
                "INSERT INTO clusterings VALUES (?, ?, ?, ?)",
                (iteration, result.k, result.embedder, json.dumps(result.inertia_curve)),
            )
            conn.executemany(
                "INSERT INTO cluster_points (iteration, failure_id, cluster_id, x, y, embedding) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(iteration, p.failure_id, p.cluster_id, p.x, p.y, _vector_blob(p.vector)) for p in result.points],
            )

    def clustering(self, iteration: int) -> ClusteringResult | None:
        rows = self._query("SELECT k, embedder, inertia_curve_json FROM clusterings WHERE iteration = ?", (iteration,))
        if not rows:
            return None
        k, embedder, curve = rows[0]
        return ClusteringResult(k=k, embedder=embedder, inertia_curve=json.loads(curve),
                                points=self.cluster_points(iteration))

    def cluster_points(self, iteration: int, cluster_id: int | None = None) -> list[ClusterPoint]:
        """The scatter plot's points (no JSON decoding: plain columns)."""
        sql = "SELECT failure_id, cluster_id, x, y FROM cluster_points WHERE iteration = ?"
        params: list[Any] = [iteration]
        if cluster_id is not None:
            sql += " AND cluster_id = ?"
            params.append(cluster_id)
        rows = self._query(sql + " ORDER BY rowid", params)
        return [ClusterPoint(failure_id=f, cluster_id=c, x=x, y=y) for f, c, x, y in rows]

    def cluster_sizes(self, iteration: int) -> dict[int, int]:
        rows = self._query(
            "SELECT cluster_id, COUNT(*) FROM cluster_points WHERE iteration = ? GROUP BY 1 ORDER BY 1", (iteration,)
        )
        return dict(rows)

    def cluster_vectors(self, iterations: list[int] | None = None) -> list[tuple[int, str, int, np.ndarray]]:
        """(iteration, failure_id, cluster_id, float32 vector) of every clustered failure that has its analysis
        embedding stored, by iteration then clustering order; `iterations=None`: all. Runs made before schema v4
        stored none: []."""
        if not self._has_column("cluster_points", "embedding"):
            return []
        import numpy as np

        chosen, params = _iteration_filter(iterations)
        rows = self._query("SELECT iteration, failure_id, cluster_id, embedding FROM cluster_points "
                           f"WHERE embedding IS NOT NULL AND {chosen} ORDER BY iteration, rowid", params)
        return [(it, f, c, np.frombuffer(blob, dtype="<f4")) for it, f, c, blob in rows]

    def _has_column(self, table: str, column: str) -> bool:
        return any(row[1] == column for row in self._query(f"PRAGMA table_info({table})"))

    def save_patterns(self, iteration: int, patterns: Iterable[Pattern]) -> None:
        """Replace the named error patterns of `iteration` (one per cluster)."""
        rows = [(iteration, p.cluster_id, p.category_name, p.model_dump_json()) for p in patterns]
        with self._write() as conn:
            conn.execute("DELETE FROM patterns WHERE iteration = ?", (iteration,))
            conn.executemany("INSERT INTO patterns VALUES (?, ?, ?, ?)", rows)

    def patterns(self, iteration: int) -> list[Pattern]:
        rows = self._query("SELECT record_json FROM patterns WHERE iteration = ? ORDER BY cluster_id", (iteration,))
        return [Pattern.model_validate_json(row[0]) for row in rows]

    def save_taxa(self, iteration: int, taxa: Iterable[Taxon]) -> None:
        """Replace the taxa of `iteration`: which taxon each of its patterns (clusters) belongs to."""
        rows = []
        for taxon in taxa:
            if taxon.iteration != iteration:
                raise ValueError(f"taxon of cluster {taxon.cluster_id} is for iteration {taxon.iteration}, "
                                 f"not {iteration}")
            rows.append((iteration, taxon.cluster_id, taxon.taxon_id, taxon.similarity, taxon.display_name))
        with self._write() as conn:
            conn.execute("DELETE FROM taxa WHERE iteration = ?", (iteration,))
            conn.executemany("INSERT INTO taxa VALUES (?, ?, ?, ?, ?)", rows)

    def taxa(self, iterations: list[int] | None = None) -> list[Taxon]:
        """The stored taxa, by iteration then cluster id; `iterations=None`: all. A run made before schema v4
        (opened read-only, so never migrated) has none: []."""
        if not self._has_table("taxa"):
            return []
        chosen, params = _iteration_filter(iterations)
        rows = self._query("SELECT iteration, cluster_id, taxon_id, similarity, display_name FROM taxa "
                           f"WHERE {chosen} ORDER BY iteration, cluster_id", params)
        return [Taxon(*row) for row in rows]

    # -------------------------------------------------- strategies (versioned)

    def save_strategies(self, iteration: int, strategies: Iterable[Strategy], author: str = "agent") -> None:
        """Store the drafted strategies of `iteration` as version 1 each.

        This is the strategy stage's output: it replaces the iteration's
        drafted strategies and their whole edit history. Hand-written ones
        (`add_written_strategy`) are a person's work, not the stage's: they
        stay, with their history, moved to a fresh id if a drafted one now
        has theirs (a re-clustering may have found more clusters).
        """
        strategies = list(strategies)
        now = _now()
        rows = [(iteration, s.cluster_id, 1, "drafted", author, now, None, s.model_dump_json()) for s in strategies]
        with self._write() as conn:
            conn.execute(
                f"DELETE FROM strategy_versions WHERE iteration = ? AND cluster_id NOT IN ({_WRITTEN_IDS})",
                (iteration, iteration),
            )
            drafted = {s.cluster_id for s in strategies}
            for cluster_id in sorted(drafted & set(self._written_ids(conn, iteration))):
                fresh = max(max(drafted), self._max_strategy_id(conn, iteration)) + 1
                self._move_strategy(conn, iteration, cluster_id, fresh)
            conn.executemany("INSERT INTO strategy_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    @staticmethod
    def _written_ids(conn: sqlite3.Connection, iteration: int) -> list[int]:
        return [row[0] for row in conn.execute(_WRITTEN_IDS, (iteration,))]

    @staticmethod
    def _max_strategy_id(conn: sqlite3.Connection, iteration: int) -> int:
        """The highest id any cluster, pattern or strategy of `iteration` has (-1: none)."""
        (highest,) = conn.execute(
            "SELECT COALESCE(MAX(id), -1) FROM ("
            "SELECT MAX(cluster_id) AS id FROM cluster_points WHERE iteration = ? "
            "UNION ALL SELECT k - 1 FROM clusterings WHERE iteration = ? "
            "UNION ALL SELECT MAX(cluster_id) FROM patterns WHERE iteration = ? "
            "UNION ALL SELECT MAX(cluster_id) FROM strategy_versions WHERE iteration = ?)",
            (iteration,) * 4,
        ).fetchone()
        return highest

    @staticmethod
    def _move_strategy(conn: sqlite3.Connection, iteration: int, cluster_id: int, new_id: int) -> None:
        """Renumber every version of one strategy (the id inside each record too)."""
        conn.execute(
            "UPDATE strategy_versions SET cluster_id = ?, record_json = json_set(record_json, '$.cluster_id', ?) "
            "WHERE iteration = ? AND cluster_id = ?",
            (new_id, new_id, iteration, cluster_id),
        )

    def adding_strategies_refused(self, iteration: int) -> str | None:
        """Why no hand-written strategy can be added to `iteration` now, or None.

        Generation reads the strategies once they are drafted, until it has used them."""
        if not self.stage_done(iteration, stages.STRATEGIES):
            return (f"iteration {iteration} has no drafted strategies: the run drafts them after naming its "
                    "error patterns (never in its last iteration, which generates nothing), and a strategy "
                    "added before would not be used")
        return self.strategies_locked(iteration)

    def add_written_strategy(self, iteration: int, strategy: Strategy, author: str) -> int:
        """Add a person's own strategy to `iteration` (no cluster produced it); returns its new id.

        It gets an id above every cluster and strategy of the iteration (`strategy.cluster_id` is
        replaced) and is stored `hand_written` as version 1 with source "written"; from then on it is
        edited, reverted and used by generation like a drafted one (an equal share of the pattern
        budget). Refused (StoreError, with the reason) when `adding_strategies_refused`, or when a
        current strategy has the same name: samples name their strategy, so names must stay unique.
        """
        self._refuse_if_locked(self.adding_strategies_refused(iteration))
        taken = {s.strategy_name.casefold(): s.strategy_name for s in self.current_strategies(iteration)}
        if strategy.strategy_name.casefold() in taken:
            raise StoreError(f"refused: iteration {iteration} already has a strategy named "
                             f"{taken[strategy.strategy_name.casefold()]!r}; pick another name")
        with self._write() as conn:
            cluster_id = self._max_strategy_id(conn, iteration) + 1
            written = strategy.model_copy(update={"cluster_id": cluster_id, "hand_written": True})
            self._add_strategy_version(iteration, cluster_id, written, "written", author)
        return cluster_id

    def _add_strategy_version(self, iteration: int, cluster_id: int, strategy: Strategy, source: str,
                              author: str, reverted_from: int | None = None) -> int:
        if strategy.cluster_id != cluster_id:
            raise ValueError(f"strategy is for cluster {strategy.cluster_id}, not {cluster_id}")
        with self._write() as conn:
            (latest,) = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM strategy_versions WHERE iteration = ? AND cluster_id = ?",
                (iteration, cluster_id),
            ).fetchone()
            conn.execute(
                "INSERT INTO strategy_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (iteration, cluster_id, latest + 1, source, author, _now(), reverted_from,
                 strategy.model_dump_json()),
            )
        return latest + 1

    def strategies_locked(self, iteration: int) -> str | None:
        """Why the strategies of `iteration` can no longer change (generation has used them), or None."""
        if self.stage_done(iteration, stages.GENERATE):
            return (f"iteration {iteration}'s samples were already generated from these strategies, "
                    "so an edit would not take effect")
        return None

    def save_strategy_edit(self, iteration: int, cluster_id: int, strategy: Strategy, author: str) -> int:
        """Store a person's edit of a strategy as a new version; returns the version number.

        Raises StoreError once generation has used the iteration's strategies."""
        self._refuse_if_locked(self.strategies_locked(iteration))
        return self._add_strategy_version(iteration, cluster_id, strategy, "edited", author)

    def revert_strategy(self, iteration: int, cluster_id: int, version: int, author: str) -> int:
        """Make an old version current again by copying it into a new version; returns the new number."""
        self._refuse_if_locked(self.strategies_locked(iteration))
        old = {v.version: v for v in self.strategy_history(iteration, cluster_id)}.get(version)
        if old is None:
            raise StoreError(f"iteration {iteration}, cluster {cluster_id} has no strategy version {version}")
        return self._add_strategy_version(iteration, cluster_id, old.strategy, "reverted", author, version)

    def strategy_history(self, iteration: int, cluster_id: int) -> list[StrategyVersion]:
        """Every version of one cluster's strategy, oldest first."""
        rows = self._query(
            "SELECT version, record_json, source, author, created_at, reverted_from FROM strategy_versions "
            "WHERE iteration = ? AND cluster_id = ? ORDER BY version",
            (iteration, cluster_id),
        )
        return [StrategyVersion(v, Strategy.model_validate_json(j), s, a, t, r) for v, j, s, a, t, r in rows]

    def current_strategies(self, iteration: int) -> list[Strategy]:
        """The latest version of each cluster's strategy: what data generation uses."""
        rows = self._query(
            "SELECT record_json FROM strategy_versions s WHERE iteration = ? AND version = "
            "(SELECT MAX(version) FROM strategy_versions WHERE iteration = s.iteration AND cluster_id = s.cluster_id) "
            "ORDER BY cluster_id",
            (iteration,),
        )
        return [Strategy.model_validate_json(row[0]) for row in rows]

    # --------------------------------------------------------- synthetic samples

    def save_samples(self, iteration: int, samples: Iterable[SyntheticSample],
                     qc_results: Iterable[QCResult] = (), *, replace: bool = True) -> None:
        """Store synthetic samples, every generation attempt of them, and the judge's verdicts.

        `samples` may hold several attempts of one `sample_id` (`attempt` 1, 2,
        ...); a `QCResult` belongs to the attempt with its (`sample_id`,
        `attempt`), which must be stored already or be in `samples`. Sample
        ids are unique within an iteration (the same id in two iterations is
        two samples). A sample's status follows its latest attempt:
        `pending_qc` until judged, then `accepted_qc` / `rejected_qc`; a
        person's `accepted_human` / `rejected_human` is kept.

        `replace=True` (the stage's output): the iteration's samples become
        exactly these. `replace=False`: add or overwrite by (sample_id,
        attempt), e.g. to store QC verdicts and regenerations after generation.
        """
        samples, qc_results = list(samples), list(qc_results)
        with self._write() as conn:
            if replace:
                conn.execute("DELETE FROM samples WHERE iteration = ?", (iteration,))  # cascades to attempts
            self._insert_sample_attempts(conn, iteration, samples)
            self._insert_qc_results(conn, iteration, qc_results)
            touched = sorted({s.sample_id for s in samples} | {q.sample_id for q in qc_results})
            self._refresh_samples(conn, iteration, touched)

    @staticmethod
    def _insert_sample_attempts(conn: sqlite3.Connection, iteration: int, samples: list[SyntheticSample]) -> None:
        # The parent row is a placeholder until `_refresh_samples` fills it from the latest attempt.
        conn.executemany(
            "INSERT INTO samples (iteration, sample_id, branch, strategy, based_on_example, status, sample_json) "
            "VALUES (?, ?, ?, ?, ?, 'pending_qc', '{}') ON CONFLICT (iteration, sample_id) DO NOTHING",
            [(iteration, s.sample_id, s.branch, s.based_on_strategy, s.based_on_example) for s in samples],
        )
        conn.executemany(
            "INSERT INTO sample_attempts (iteration, sample_id, attempt, sample_json) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (iteration, sample_id, attempt) DO UPDATE SET sample_json = excluded.sample_json",
            [(iteration, s.sample_id, s.attempt, s.model_dump_json()) for s in samples],
        )

    @staticmethod
    def _insert_qc_results(conn: sqlite3.Connection, iteration: int, qc_results: list[QCResult]) -> None:
        for qc in qc_results:
            cursor = conn.execute(
                "UPDATE sample_attempts SET qc_json = ?, score = ?, passed = ? "
                "WHERE iteration = ? AND sample_id = ? AND attempt = ?",
                (qc.model_dump_json(), qc.average, int(qc.passed), iteration, qc.sample_id, qc.attempt),
            )
            if cursor.rowcount == 0:
                raise StoreError(
                    f"QC result for unknown sample {qc.sample_id!r} attempt {qc.attempt} in iteration {iteration}"
                )

    @staticmethod
    def _refresh_samples(conn: sqlite3.Connection, iteration: int, sample_ids: list[str]) -> None:
        """Copy each touched sample's latest attempt into its `samples` row and derive its status."""
        conn.execute(
            """
            UPDATE samples SET
                attempt = latest.attempt, n_attempts = latest.n, score = latest.score,
                sample_json = latest.sample_json, qc_json = latest.qc_json,
                branch = json_extract(latest.sample_json, '$.branch'),
                strategy = json_extract(latest.sample_json, '$.based_on_strategy'),
                based_on_example = json_extract(latest.sample_json, '$.based_on_example'),
                status = CASE
                    WHEN samples.status IN ('accepted_human', 'rejected_human', 'rejected_leak') THEN samples.status
                    WHEN latest.qc_json IS NULL THEN 'pending_qc'
                    WHEN latest.passed THEN 'accepted_qc' ELSE 'rejected_qc' END
            FROM (
                SELECT sample_id, attempt, sample_json, qc_json, score, passed,
                       COUNT(*) OVER (PARTITION BY sample_id) AS n,
                       ROW_NUMBER() OVER (PARTITION BY sample_id ORDER BY attempt DESC) AS rank
                FROM sample_attempts
                WHERE iteration = ? AND sample_id IN (SELECT value FROM json_each(?))
            ) AS latest
            WHERE latest.rank = 1 AND samples.iteration = ? AND samples.sample_id = latest.sample_id
            """,
            (iteration, json.dumps(sample_ids), iteration),
        )

    @staticmethod
    def _sample_filter(iteration: int | None, strategy: str | None, branch: str | None,
                       status: str | Sequence[str] | None, min_score: float | None,
                       max_score: float | None) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for column, value in (("iteration", iteration), ("strategy", strategy), ("branch", branch)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            for one in statuses:
                _check_choice(one, SAMPLE_STATUSES, "sample status")
            clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += statuses
        if min_score is not None:
            clauses.append("score >= ?")
            params.append(min_score)
        if max_score is not None:
            clauses.append("score <= ?")
            params.append(max_score)
        return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params

    def samples(self, iteration: int | None = None, *, strategy: str | None = None, branch: str | None = None,
                status: str | Sequence[str] | None = None, min_score: float | None = None,
                max_score: float | None = None, limit: int | None = 50, offset: int = 0) -> list[StoredSample]:
        """A page of samples (latest attempt each) matching every given filter, in generation order.

        `strategy` is the `based_on_strategy` name; scores are the latest QC
        average (unjudged samples never match a score filter).
        """
        where, params = self._sample_filter(iteration, strategy, branch, status, min_score, max_score)
        page, page_params = _page(limit, offset)
        # Page over the (covering) indexes first, then read the JSON of the page's rows only.
        rows = self._query(
            "SELECT sample_json, qc_json, iteration, status, n_attempts, status_author, status_at FROM samples "
            f"WHERE rowid IN (SELECT rowid FROM samples {where} ORDER BY rowid{page}) ORDER BY rowid",
            params + page_params,
        )
        return [
            StoredSample(
                sample=SyntheticSample.model_validate_json(sample_json),
                qc=QCResult.model_validate_json(qc_json) if qc_json else None,
                iteration=iteration_, status=status_, n_attempts=n_attempts,
                status_author=author, status_at=at,
            )
            for sample_json, qc_json, iteration_, status_, n_attempts, author, at in rows
        ]

    def sample_count(self, iteration: int | None = None, *, strategy: str | None = None, branch: str | None = None,
                     status: str | Sequence[str] | None = None, min_score: float | None = None,
                     max_score: float | None = None) -> int:
        """How many samples `samples(...)` with the same filters would return without paging."""
        where, params = self._sample_filter(iteration, strategy, branch, status, min_score, max_score)
        return self._query(f"SELECT COUNT(*) FROM samples {where}", params)[0][0]

    def sample_counts(self, iteration: int | None = None,
                      group_by: Sequence[str] = ("branch", "status")) -> list[dict[str, Any]]:
        """Sample counts grouped by any of `SAMPLE_GROUPS`, e.g. accepted per strategy."""
        if not group_by:
            raise ValueError("sample_counts needs at least one column to group by")
        for column in group_by:
            _check_choice(column, SAMPLE_GROUPS, "sample grouping")
        columns = ", ".join(group_by)
        where, params = self._sample_filter(iteration, None, None, None, None, None)
        rows = self._query(
            f"SELECT {columns}, COUNT(*), AVG(score) FROM samples {where} GROUP BY {columns} ORDER BY {columns}",
            params,
        )
        return [dict(zip([*group_by, "count", "mean_score"], row, strict=False)) for row in rows]

    def sample_history(self, iteration: int, sample_id: str) -> list[SampleAttempt]:
        """Every attempt of one sample with the judge's scores and feedback, first attempt first."""
        rows = self._query(
            "SELECT sample_json, qc_json FROM sample_attempts WHERE iteration = ? AND sample_id = ? ORDER BY attempt",
            (iteration, sample_id),
        )
        return [
            SampleAttempt(SyntheticSample.model_validate_json(s), QCResult.model_validate_json(q) if q else None)
            for s, q in rows
        ]

    def decisions_locked(self, iteration: int) -> str | None:
        """Why the samples of `iteration` can no longer be accepted or rejected, or None.

        The decisions are consumed when the next iteration's training set is built."""
        if self.stage_done(iteration + 1, stages.TRAIN_SET):
            return (f"iteration {iteration + 1}'s training set was already built from these decisions, "
                    "so a change would not take effect")
        return None

    def set_sample_status(self, sample_ids: Iterable[str], status: str, author: str,
                          iteration: int | None = None) -> int:
        """Set the status of many samples at once (a review); returns how many rows changed.

        Sample ids are unique within an iteration; `iteration=None` updates
        the ids in every iteration that has them. Samples the leakage guard
        dropped keep their status (`mark_leaked` is the only way to set it);
        once the next training set is built, decisions are refused (StoreError).
        """
        _check_choice(status, SAMPLE_STATUSES, "sample status")
        if status == LEAKED_STATUS:
            raise ValueError(f"{LEAKED_STATUS!r} is set by the leakage guard only (RunStore.mark_leaked)")
        sample_ids = list(sample_ids)
        scope = [iteration] if iteration is not None else [row[0] for row in self._query(
            "SELECT DISTINCT iteration FROM samples WHERE sample_id IN (SELECT value FROM json_each(?))",
            (json.dumps(sample_ids),))]
        for one in scope:
            self._refuse_if_locked(self.decisions_locked(one))
        return self._update_status(sample_ids, status, author, iteration)

    def mark_leaked(self, sample_ids: Iterable[str], iteration: int) -> int:
        """The leakage guard's verdict: these samples overlap a validation/test question. Final."""
        return self._update_status(sample_ids, LEAKED_STATUS, "leakage-guard", iteration)

    def _update_status(self, sample_ids: Iterable[str], status: str, author: str, iteration: int | None) -> int:
        sql = ("UPDATE samples SET status = ?, status_author = ?, status_at = ? "
               "WHERE sample_id IN (SELECT value FROM json_each(?)) AND status != ?")
        params: list[Any] = [status, author, _now(), json.dumps(list(sample_ids)), LEAKED_STATUS]
        if iteration is not None:
            sql += " AND iteration = ?"
            params.append(iteration)
        with self._write() as conn:
            cursor = conn.execute(sql, params)
        return cursor.rowcount

    @staticmethod
    def _refuse_if_locked(reason: str | None) -> None:
        if reason is not None:
            raise StoreError(f"refused: {reason}")

    def accepted_samples(self, iteration: int) -> list[SyntheticSample]:
        """The samples of `iteration` to train on: accepted by the judge or by a person."""
        return [row.sample for row in self.samples(iteration, status=ACCEPTED_STATUSES, limit=None)]

    # ------------------------------------------------- planted samples (judge check)

    def save_canaries(self, iteration: int, verdicts: Iterable[Any]) -> None:
        """Replace the iteration's verdicts on planted samples (`pada.agents.canaries.CanaryVerdict`s or
        their dicts). They live in their own table: never samples, counts or training rows."""
        rows = [v.model_dump() if hasattr(v, "model_dump") else dict(v) for v in verdicts]
        with self._write() as conn:
            conn.execute("DELETE FROM canaries WHERE iteration = ?", (iteration,))
            conn.executemany(
                "INSERT INTO canaries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(iteration, r["canary_id"], r["kind"], int(bool(r.get("control"))), int(bool(r.get("ok"))),
                  int(bool(r.get("passed"))), r.get("average"), json.dumps(r)) for r in rows],
            )

    def canaries(self, iteration: int | None = None) -> list[dict[str, Any]]:
        """Stored verdicts on planted samples (dicts of `CanaryVerdict`), by iteration then id. A run made
        before the canaries table existed (schema < 3, opened read-only, so never migrated) has none."""
        if not self._has_table("canaries"):
            return []
        where, params = ("WHERE iteration = ?", [iteration]) if iteration is not None else ("", [])
        rows = self._query(f"SELECT record_json FROM canaries {where} ORDER BY iteration, canary_id", params)
        return [json.loads(row[0]) for row in rows]

    def _has_table(self, name: str) -> bool:
        return bool(self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    # ------------------------------------------------------------ training set

    def save_training_set(self, iteration: int, rows: Iterable[TrainingRow | Mapping[str, Any]]) -> None:
        """Replace the training set iteration `iteration` trained on (order kept)."""
        validated = [row if isinstance(row, TrainingRow) else TrainingRow.model_validate(row) for row in rows]
        with self._write() as conn:
            conn.execute("DELETE FROM training_rows WHERE iteration = ?", (iteration,))
            conn.executemany(
                "INSERT INTO training_rows VALUES (?, ?, ?, ?)",
                [(iteration, i, row.id, json.dumps(row.messages)) for i, row in enumerate(validated)],
            )

    def training_set(self, iteration: int) -> list[TrainingRow]:
        rows = self._query(
            "SELECT row_id, messages_json FROM training_rows WHERE iteration = ? ORDER BY position", (iteration,)
        )
        return [TrainingRow(id=row_id, messages=json.loads(messages)) for row_id, messages in rows]

    def training_set_size(self, iteration: int) -> int:
        return self._query("SELECT COUNT(*) FROM training_rows WHERE iteration = ?", (iteration,))[0][0]

    def export_training_set(self, iteration: int, out_dir: str | Path, filename: str = "train.jsonl") -> Path:
        """Write the iteration's training set as chat JSONL (`{"messages": [...]}` per line).

        Loadable with `datasets.load_dataset("json", data_files=path)`; returns the file path.
        """
        rows = self.training_set(iteration)
        if not rows:
            raise StoreError(f"run {self.run_id} has no training set for iteration {iteration}")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / filename
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps({"messages": row.messages}, ensure_ascii=False) + "\n")
        return path

    # ---------------------------------------------------------------- LLM usage

    def record_llm_call(self, iteration: int | None, call: LLMCall) -> None:
        """Account for one LLM request (called by the LLM client, cache hits included)."""
        self.record_llm_calls(iteration, [call])

    def record_llm_calls(self, iteration: int | None, calls: Iterable[LLMCall]) -> None:
        now = _now()
        rows = [
            (now, iteration, c.stage, c.model, c.prompt_tokens, c.completion_tokens, c.cost_usd, c.latency_s,
             int(c.cache_hit), int(c.ok), c.model_dump_json())
            for c in calls
        ]
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO llm_calls (at, iteration, stage, model, prompt_tokens, completion_tokens, cost_usd, "
                "latency_s, cache_hit, ok, record_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def llm_calls(self, iteration: int | None = None, stage: str | None = None, *,
                  limit: int | None = 100, offset: int = 0) -> list[LLMCall]:
        clauses, params = [], []
        for column, value in (("iteration", iteration), ("stage", stage)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        page, page_params = _page(limit, offset)
        rows = self._query(f"SELECT record_json FROM llm_calls {where} ORDER BY id" + page, params + page_params)
        return [LLMCall.model_validate_json(row[0]) for row in rows]

    def llm_usage(self, group_by: Sequence[str] = ("stage", "model"),
                  iteration: int | None = None) -> list[dict[str, Any]]:
        """Calls, tokens, cost and latency summed per group (any of `USAGE_GROUPS`), in SQL.

        Each dict holds the group columns plus `calls`, `cache_hits`,
        `failures`, `prompt_tokens`, `completion_tokens`, `cost_usd`, `latency_s`.
        """
        for column in group_by:
            _check_choice(column, USAGE_GROUPS, "usage grouping")
        where, params = ("WHERE iteration = ?", [iteration]) if iteration is not None else ("", [])
        select = ", ".join([*group_by, "COUNT(*)", "SUM(cache_hit)", "SUM(1 - ok)", "SUM(prompt_tokens)",
                            "SUM(completion_tokens)", "SUM(cost_usd)", "SUM(latency_s)"])
        grouping = f"GROUP BY {', '.join(group_by)} ORDER BY {', '.join(group_by)}" if group_by else ""
        rows = self._query(f"SELECT {select} FROM llm_calls {where} {grouping}", params)
        names = [*group_by, "calls", "cache_hits", "failures", "prompt_tokens", "completion_tokens",
                 "cost_usd", "latency_s"]
        return [dict(zip(names, row, strict=False)) for row in rows if row[len(group_by)]]  # no calls: no row

    # ------------------------------------------------------- LLM provider batches

    def record_llm_batch(self, iteration: int, stage: str, content_hash: str, *, provider: str, batch_id: str,
                         input_file_id: str, n_requests: int, status: str) -> int:
        """Remember a provider batch for a request set (`pada.llm.batch`) before anyone waits on it; returns its
        round (1 + the stage's batches recorded before in this iteration)."""
        now = _now()
        with self._write() as conn:
            row = conn.execute("SELECT round FROM llm_batches WHERE iteration = ? AND stage = ? AND content_hash = ?",
                               (iteration, stage, content_hash)).fetchone()
            batch_round = row[0] if row else conn.execute(
                "SELECT COALESCE(MAX(round), 0) + 1 FROM llm_batches WHERE iteration = ? AND stage = ?",
                (iteration, stage)).fetchone()[0]
            conn.execute(
                "INSERT OR REPLACE INTO llm_batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (iteration, stage, batch_round, content_hash, provider, batch_id, input_file_id, n_requests, status,
                 now, now),
            )
        return batch_round

    def llm_batch(self, iteration: int, stage: str, content_hash: str) -> dict[str, Any] | None:
        """The recorded batch for this request set ({stage, round, content_hash, provider, batch_id, input_file_id,
        n_requests, status, created_at, updated_at}), or None. A run older than schema v5 has none."""
        if not self._has_table("llm_batches"):
            return None
        names = ("stage", "round", "content_hash", "provider", "batch_id", "input_file_id", "n_requests", "status",
                 "created_at", "updated_at")
        rows = self._query(f"SELECT {', '.join(names)} FROM llm_batches "
                           "WHERE iteration = ? AND stage = ? AND content_hash = ?", (iteration, stage, content_hash))
        return dict(zip(names, rows[0], strict=True)) if rows else None

    def pending_llm_batches(self, ended: Sequence[str]) -> list[dict[str, Any]]:
        """Recorded batches whose status is not in `ended` (`pada.llm.batch.ENDED`), oldest first: what a run is
        waiting for ({iteration, stage, round, provider, batch_id, n_requests, status, created_at, updated_at})."""
        if not self._has_table("llm_batches"):
            return []
        names = ("iteration", "stage", "round", "provider", "batch_id", "n_requests", "status", "created_at",
                 "updated_at")
        marks = ", ".join("?" for _ in ended) or "NULL"
        rows = self._query(f"SELECT {', '.join(names)} FROM llm_batches WHERE status NOT IN ({marks}) "
                           "ORDER BY created_at, iteration, stage, round", tuple(ended))
        return [dict(zip(names, row, strict=True)) for row in rows]

    def set_llm_batch_status(self, iteration: int, stage: str, content_hash: str, status: str) -> None:
        """Note a recorded batch's latest status (as the provider reports it)."""
        with self._write() as conn:
            conn.execute("UPDATE llm_batches SET status = ?, updated_at = ? "
                         "WHERE iteration = ? AND stage = ? AND content_hash = ?",
                         (status, _now(), iteration, stage, content_hash))


def _vector_blob(vector: Sequence[float] | None) -> bytes | None:
    """A vector as float32 little-endian bytes (what `cluster_vectors` reads back), or None."""
    if vector is None:
        return None
    import numpy as np

    return np.asarray(vector, dtype="<f4").tobytes()


def _iteration_filter(iterations: Sequence[int] | None) -> tuple[str, list[Any]]:
    """A WHERE condition keeping the rows of `iterations` (None: every row) and its parameters."""
    if iterations is None:
        return "1", []
    return "iteration IN (SELECT value FROM json_each(?))", [json.dumps([int(i) for i in iterations])]


def list_runs(runs_root: str | Path | None = None) -> list[RunSummary]:
    """Every run under the runs root, newest first.

    A directory whose database cannot be read is listed with status
    `unreadable` and the reason in `error`, rather than hiding it. Reads only:
    listing never changes a run's files (`readonly=True`).
    """
    root = layout.runs_root(runs_root)
    if not root.is_dir():
        return []
    summaries = [_summarise(path) for path in root.iterdir() if (path / layout.DB_NAME).is_file()]
    return sorted(summaries, key=lambda s: (s.created_at, s.run_id), reverse=True)


def _summarise(path: Path) -> RunSummary:
    try:
        with RunStore(path, readonly=True) as store:
            state, config = store.state(), store.config()
    except (StoreError, sqlite3.Error, IndexError) as err:  # IndexError: no run row
        return RunSummary(path.name, path, None, "unreadable", None, None, None, str(err), "", "", {})
    return RunSummary(
        run_id=state.run_id, path=path, task=layout.task_name(config), status=state.status,
        iteration=state.iteration, stage=state.stage, pid=state.pid, error=state.error,
        created_at=state.created_at, updated_at=state.updated_at, config=config,
    )
