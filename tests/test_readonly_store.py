"""Commands that look at runs do not harm what they read.

`status`, `runs` and the dashboard's views open stores read-only: a foreign SQLite file or an empty
`run.db` gets a one-line error and stays byte-identical, an old schema is read without migrating it,
and a run on a read-only disk can still be viewed. The dashboard's YAML box cannot turn off the sandbox.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from pada import cli
from pada.dashboard import frames, processes
from pada.config import ConfigError
from pada.records import LLMCall
from pada.store import RunStore, StoreError, list_runs
from pada.store.schema import migrate

CONFIG = {"task": "gsm8k", "method": "pada", "iterations": 2}


def snapshot(directory: Path) -> dict[str, str]:
    """Every file in `directory` with the hash of its bytes."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


@pytest.fixture
def foreign(tmp_path) -> Path:
    """Somebody else's SQLite database where a run's would be (`<runs root>/foreign/run.db`)."""
    run_dir = tmp_path / "runs" / "foreign"
    run_dir.mkdir(parents=True)
    conn = sqlite3.connect(run_dir / "run.db")
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices VALUES (1, 9.5)")
    conn.commit()
    conn.close()
    return run_dir


def test_status_and_runs_leave_a_foreign_sqlite_file_byte_identical(foreign, capsys):
    before = snapshot(foreign)
    assert cli.main(["status", str(foreign)]) == 2
    line = one_error_line(capsys)
    assert "not a PaDA run" in line and str(foreign / "run.db") in line
    assert cli.main(["runs", "--runs-root", str(foreign.parent)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert any(row.startswith("foreign") and "unreadable" in row and "not a PaDA run" in row for row in out)
    assert cli.main(["runs", "--runs-root", str(foreign.parent), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "unreadable"
    # A writer refuses it too, before touching it (no WAL switch, no tables).
    with pytest.raises(StoreError, match="not a PaDA run"):
        RunStore.open(foreign)
    assert frames.runs_frame(foreign.parent)["status"].tolist() == ["unreadable"]
    assert snapshot(foreign) == before  # same bytes, and no -wal / -shm / lock file appeared


def test_an_empty_run_db_is_a_one_line_error_and_not_turned_into_a_run(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "empty"
    run_dir.mkdir(parents=True)
    (run_dir / "run.db").touch()
    assert cli.main(["status", str(run_dir)]) == 2
    line = one_error_line(capsys)
    assert str(run_dir / "run.db") in line and "empty file" in line
    assert cli.main(["status", "--runs-root", str(run_dir.parent)]) == 2  # the newest run, by default
    assert "empty file" in one_error_line(capsys)
    with pytest.raises(StoreError, match="empty file"):
        RunStore.open(run_dir)  # nor does a writer make a run of it
    [summary] = list_runs(run_dir.parent)
    assert summary.status == "unreadable" and "empty file" in summary.error
    assert snapshot(run_dir) == {"run.db": hashlib.sha256(b"").hexdigest()}


def test_reading_an_old_schema_does_not_migrate_it(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "old"
    run_dir.mkdir(parents=True)
    conn = sqlite3.connect(run_dir / "run.db", isolation_level=None)
    migrate(conn, target=1)
    conn.execute("INSERT INTO run VALUES (1, 'old', 't0', 't0', ?, 'completed', 2, NULL, NULL, NULL)",
                 (json.dumps(CONFIG),))
    conn.close()
    before = snapshot(run_dir)
    assert cli.main(["status", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "completed"
    assert cli.main(["runs", "--runs-root", str(run_dir.parent)]) == 0
    assert "completed" in capsys.readouterr().out
    assert snapshot(run_dir) == before
    conn = sqlite3.connect(run_dir / "run.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_a_read_only_view_refuses_writes_with_a_clear_error(tmp_path):
    store = RunStore.create(CONFIG, runs_root=tmp_path)
    view = RunStore.open(store.path, readonly=True)
    with pytest.raises(StoreError, match="read-only"):
        view.set_status("running")
    assert view.writable() is not view and not view.writable().readonly


@pytest.fixture
def read_only_disk(tmp_path):
    """A tmpfs mounted at tmp_path/disk, and a function that remounts it read-only.

    chmod does not stop root (the test usually runs as root), so only a read-only mount is honest.
    """
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "pada-ro-test", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to make a read-only disk: {mounted.stderr.strip()}")

    def make_read_only() -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True, capture_output=True)

    try:
        yield mount_point, make_read_only
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_a_run_on_a_read_only_disk_can_be_viewed(read_only_disk, capsys, monkeypatch):
    disk, make_read_only = read_only_disk
    root = disk / "runs"
    with RunStore.create(CONFIG, runs_root=root, run_id="frozen") as store:
        store.save_metrics(1, "validation", {"accuracy": 0.5})
        store.record_llm_call(1, LLMCall(stage="analyse", model="m", request_hash="h", prompt_tokens=3, completion_tokens=4,
                                         cost_usd=0.25, latency_s=0.1, cache_hit=False, ok=True))
        store.set_status("completed")
    make_read_only()
    with pytest.raises(OSError):
        (root / "probe").touch()  # really read-only, even for root
    before = snapshot(root / "frozen")
    opened = []
    connect = RunStore._sqlite
    monkeypatch.setattr(RunStore, "_sqlite", lambda self, mode, immutable=False: (
        opened.append((mode, immutable)), connect(self, mode, immutable))[1])

    view = RunStore.open("frozen", runs_root=root, readonly=True)
    assert view.state().status == "completed"
    # SQLite cannot create the WAL's shared memory on this disk: mode=ro fails, immutable=1 reads.
    assert opened == [("ro", False), ("ro", True)]
    assert view.metrics()[0].value == 0.5
    assert cli.main(["status", "frozen", "--runs-root", str(root), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "completed" and shown["cost_usd"] == 0.25
    assert cli.main(["runs", "--runs-root", str(root)]) == 0
    assert "frozen" in capsys.readouterr().out
    frame = frames.runs_frame(root)
    assert frame["status"].tolist() == ["completed"] and frame["cost_usd"].tolist() == [0.25]
    assert processes.stop_run(view) == "run frozen has no running process"  # nothing to stop, nothing written
    with pytest.raises(StoreError, match="frozen"):
        RunStore.open("frozen", runs_root=root)  # writing is refused in one line
    assert snapshot(root / "frozen") == before


@pytest.mark.parametrize("extra", [
    {"task_options": {"allow_unsandboxed": True}},
    {"task_options": {"allow_unsandboxed": "false"}},  # a string is truthy where the task reads it
    {"allow_unsandboxed": 1},
])
def test_the_dashboard_form_cannot_turn_off_the_sandbox(extra, tmp_path):
    with pytest.raises(ConfigError, match="allow_unsandboxed.*terminal"):
        processes.build_config(processes.merged({"task": "mbpp"}, extra))
    assert not (tmp_path / "launches").exists()


def test_the_dashboard_form_accepts_an_explicit_false():
    config = processes.build_config({"task": "mbpp", "task_options": {"allow_unsandboxed": False}})
    assert config.task_options == {"allow_unsandboxed": False}


def test_the_runs_page_refuses_a_yaml_box_that_turns_off_the_sandbox(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PADA_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60).run()
    at.text_area[0].input("task_options:\n  allow_unsandboxed: true\n")
    [b for b in at.button if b.label == "Launch"][0].click().run()
    assert not at.exception
    assert any("allow_unsandboxed" in e.value and "terminal" in e.value for e in at.error)
    assert not at.session_state["launches"] if "launches" in at.session_state else True
    assert not (tmp_path / "runs" / "launches").exists()


def test_copying_a_run_elsewhere_keeps_it_readable(tmp_path):
    """The lock file travels with a copied run and, held by nobody, names nobody."""
    store = RunStore.create(CONFIG, runs_root=tmp_path / "a", run_id="r")
    with store.runner_lock():
        pass
    shutil.copytree(store.path, tmp_path / "b" / "r")
    copy = RunStore.open("r", runs_root=tmp_path / "b", readonly=True)
    assert copy.runner() is None and copy.state().status == "created"


def test_the_dashboard_shows_a_run_on_a_read_only_disk(read_only_disk, monkeypatch):
    from streamlit.testing.v1 import AppTest

    disk, make_read_only = read_only_disk
    root = disk / "runs"
    with RunStore.create(CONFIG, runs_root=root, run_id="frozen") as store:
        store.save_metrics(1, "validation", {"accuracy": 0.5})
        store.set_current(1, "review_strategies")
        store.set_status("awaiting_review")
    make_read_only()
    before = snapshot(root / "frozen")
    monkeypatch.setenv("PADA_RUNS_DIR", str(root))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60).run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    assert any(m.label == "Status" and m.value == "awaiting_review" for m in at.metric)
    for page in ("errors", "clusters", "strategies", "samples", "evolution", "cost"):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, [e.value for e in at.error])
    at.switch_page("pages/strategies.py").run()  # a review page: it would write, so it says it cannot
    assert any("Edits are disabled" in w.value for w in at.warning)
    assert snapshot(root / "frozen") == before
