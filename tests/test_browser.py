"""The dashboard in a real browser: `streamlit run app.py` driven by Debian's chromium through Playwright.

Opens every page of a run made by the real pipeline (`pipeline_run`), edits a
strategy and rejects a sample through the UI, checks both in the store, and
saves a screenshot of each page under `test-artifacts/`. Skipped only when
/usr/bin/chromium is missing (`apt-get install -y chromium chromium-driver`);
never downloads a browser.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pada.store import RunStore

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu"]
# Navigation entries (sidebar link text) -> screenshot name and the page's title.
PAGES = [("Runs", "runs", "Runs"), ("Errors", "errors", "Errors"), ("Clusters", "clusters", "Clusters"),
         ("Patterns & strategies", "strategies", "Patterns & strategies"),
         ("Synthetic review", "samples", "Synthetic review"), ("Evolution", "evolution", "Evolution"),
         ("Cost", "cost", "Cost")]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="/usr/bin/chromium is missing (apt-get install -y chromium chromium-driver)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(pipeline_run, tmp_path):
    """A Streamlit server on a loopback port over a private copy of the pipeline's run."""
    source_root, run_id = pipeline_run
    root = tmp_path / "runs"
    shutil.copytree(source_root / run_id, root / run_id)
    port = free_port()
    env = dict(os.environ, PADA_RUNS_DIR=str(root), PYTHONPATH=str(REPO))
    log = (tmp_path / "streamlit.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],  # address: config.toml
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, tmp_path / "streamlit.log")
        assert_loopback_only(port, tmp_path / "streamlit.log")
        yield url, root, run_id
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
        log.close()


def assert_loopback_only(port: int, log_path: Path) -> None:
    """The dashboard listens on 127.0.0.1 alone (no login: never on every interface) and never looked up
    an external IP."""
    listening = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    ours = [fields[1] for fields in listening if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port]
    assert ours == ["0100007F:" + f"{port:04X}"], ours  # 127.0.0.1, little-endian hex
    assert not any(f"{port:04X}" == line.split()[1].split(":")[-1] and line.split()[3] == "0A"
                   for line in Path("/proc/net/tcp6").read_text().splitlines()[1:])
    assert "External URL" not in log_path.read_text(errors="replace")


def wait_healthy(url: str, process: subprocess.Popen, log_path: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"streamlit exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"streamlit not healthy after {timeout_s} s")


def settle(page) -> None:
    """Wait until Streamlit has finished the current script run."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=20_000)
    page.wait_for_timeout(300)


def open_page(page, link: str, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(link, exact=True).click()
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=20_000)
    settle(page)
    wait_for_charts(page)


def wait_for_charts(page) -> None:
    """Plotly draws after the script run ends: wait until every chart on the page has its SVG."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')]"
        ".every(chart => chart.querySelector('.main-svg'))",
        timeout=20_000)


def assert_no_error(page, name: str) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, f"{name}: traceback on the page"
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, f"{name}: {errors.all_inner_texts()}"


def test_every_page_in_a_browser_with_an_edit_and_a_rejection(server):
    from playwright.sync_api import sync_playwright

    url, root, run_id = server
    store = RunStore.open(run_id, runs_root=root)
    # as if the run were paused for review, where edits and decisions still take effect (a finished run's
    # are read-only: generation used the strategies, the next training set the decisions)
    store.forget_stage(1, "generate")
    store.forget_stage(2, "train_set")
    cluster = store.current_strategies(1)[0].cluster_id
    first_sample = store.samples(1, limit=1)[0].sample.sample_id
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.set_default_timeout(20_000)
            page.goto(url)
            page.get_by_role("heading", name="Runs", exact=True).wait_for()
            settle(page)
            name = page.get_by_role("textbox", name="Your name")
            name.fill("ana")
            name.press("Enter")
            settle(page)
            for link, shot, title in PAGES:
                open_page(page, link, title)
                assert_no_error(page, shot)
                assert page.get_by_text(run_id).count() > 0, f"{shot}: run {run_id} not shown"
                if shot == "strategies":
                    edit_strategy(page)
                if shot == "samples":
                    reject_sample(page)
                page.screenshot(path=str(ARTIFACTS / f"browser-{shot}.png"), full_page=True)
        finally:
            browser.close()

    latest = store.strategy_history(1, cluster)[-1]
    assert (latest.version, latest.source, latest.author) == (2, "edited", "ana")
    assert latest.strategy.strategy_name == "Edited in the browser"
    rejected = store.samples(1, status="rejected_human", limit=None)
    assert [(s.sample.sample_id, s.status_author) for s in rejected] == [(first_sample, "ana")]


def edit_strategy(page) -> None:
    page.get_by_role("textbox", name="Strategy name").first.fill("Edited in the browser")
    page.get_by_role("button", name="Save as new version").first.click()
    page.get_by_text("version 2 · edited by ana").wait_for()
    settle(page)
    assert page.get_by_role("textbox", name="Strategy name").first.input_value() == "Edited in the browser"


def reject_sample(page) -> None:
    page.get_by_role("button", name="Reject", exact=True).click()
    page.get_by_text("Rejected 1 sample").first.wait_for()
    settle(page)
