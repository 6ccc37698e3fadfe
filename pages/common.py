"""The frame every dashboard page shares: runs root, selected run, cached store queries, messages.

Caching: one `RunStore` per run directory (`st.cache_resource`; the store
gives each thread its own sqlite connection, so sharing the object is safe)
opened read-only (viewing never changes a run's files and works on a
read-only disk), plus a writable one for the review pages' edits
and query results under `st.cache_data`, keyed on the run's directory and its
`data_version()`: any write to the run (the loop's or a reviewer's) changes the
key, so a page never shows stale data and never re-queries unchanged data.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import streamlit as st

from pada.dashboard import frames, processes
from pada.store import RunStore

log = logging.getLogger("pada.dashboard")

RUN_KEY = "run"  # session-state key (and query parameter) of the selected run id
PENDING_RUN_KEY = "select_run"  # a page asks the sidebar to select this run on the next rerun
LAUNCHES_KEY = "launches"  # run id -> processes.Launch, for processes this session started
AUTHOR_KEY = "author"
SEEN_KEY = "_pada_frame_seen"  # this session has had the app's frame drawn at least once
DEFAULT_AUTHOR = "reviewer"
PAGE_SIZE = 25
REFRESH_S = 2.0  # auto-refresh period of live views while a run is active

PAGES = {  # page file -> title, used by app.py and by links between pages
    "pages/runs.py": "Runs",
    "pages/errors.py": "Errors",
    "pages/clusters.py": "Clusters",
    "pages/strategies.py": "Patterns & strategies",
    "pages/samples.py": "Synthetic review",
    "pages/evolution.py": "Evolution",
    "pages/compare.py": "Compare",
    "pages/cost.py": "Cost",
}


# ----------------------------------------------------------------- frame


_FRAME = threading.local()  # `inside` is True while app.py runs a page (in this script thread)


@contextmanager
def framed() -> Iterator[None]:
    """app.py runs the page inside this, so the page knows the frame (sidebar, run picker) is there."""
    _FRAME.inside = True
    try:
        yield
    finally:
        _FRAME.inside = False


def require_frame() -> None:
    """Make sure the page has the app's frame (sidebar, run picker) even when Streamlit skipped app.py.

    Streamlit keeps a legacy mode for apps with a `pages/` folder: when the
    first request a fresh server gets is a page URL (`/errors`), it runs that
    file directly, without app.py, until some session runs app.py's
    `st.navigation` (AppTest re-enters that mode on every run). Switch the
    mode off; in a fresh session rerun so app.py takes over (no click can be
    lost yet), otherwise draw the frame here and go on.
    """
    if getattr(_FRAME, "inside", False):
        return
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False
    if not st.session_state.get(SEEN_KEY):
        st.rerun()
    sidebar()


def sidebar() -> None:
    """The sidebar of every page: title, run picker, reviewer name."""
    st.session_state[SEEN_KEY] = True
    st.sidebar.title("PaDA Studio")
    try:
        run_picker()
    except Exception as err:  # an unreadable runs root must not take the pages down
        show_exception(err)
    st.sidebar.text_input("Your name", key=AUTHOR_KEY, placeholder=DEFAULT_AUTHOR,
                          help="Recorded with your strategy edits and sample decisions.")


def run_picker() -> None:
    """The selected run, shared by every page (session state + `?run=` in the URL)."""
    runs = run_ids(str(runs_root()))
    ids = [run_id for run_id, _ in runs]
    statuses = dict(runs)
    if st.session_state.get(PENDING_RUN_KEY) in ids:
        st.session_state[RUN_KEY] = st.session_state.pop(PENDING_RUN_KEY)
    if st.session_state.get(RUN_KEY) not in ids:
        st.session_state.pop(RUN_KEY, None)
    if not ids:
        st.sidebar.caption(f"No runs yet under `{runs_root()}`.")
        return
    # The option is the bare run id, so `?run=<id>` links to a run and stays valid as its status changes.
    run_id = st.sidebar.selectbox("Run", ids, key=RUN_KEY, bind="query-params",
                                  help="Every page shows this run. Newest first.")
    st.sidebar.caption(f"Status: **{statuses.get(run_id, '?')}**")


# ----------------------------------------------------------------- store


def runs_root() -> Path:
    return frames.app_runs_root()


@st.cache_resource(show_spinner=False, max_entries=32)
def open_store(path: str) -> RunStore:
    """A read-only view of the run: what every page reads through."""
    return RunStore(path, readonly=True)


@st.cache_resource(show_spinner=False, max_entries=32)
def open_writable_store(path: str) -> RunStore:
    """The run opened for writing: reviewers' strategy edits and sample decisions (StoreError on a read-only disk)."""
    return RunStore(path)


def editable(store: RunStore) -> RunStore:
    """A writable store on `store`'s run; the read-only one, with a warning, where the run cannot be written."""
    from pada.store import StoreError

    try:
        return open_writable_store(str(store.path))
    except StoreError as err:
        st.warning(f"Edits are disabled: {err}", icon=":material/lock:")
        return store


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def runs_table(root: str):
    """The runs table (opens every run: cached for a couple of seconds)."""
    return frames.runs_frame(Path(root))


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def run_ids(root: str) -> list[tuple[str, str]]:
    """(run id, status) of every run, newest first, for the sidebar picker."""
    from pada.store import list_runs

    return [(s.run_id, frames.effective_status(s.status, s.pid, s.path)) for s in list_runs(Path(root))]


@st.cache_data(max_entries=256, show_spinner=False)
def _cached(path: str, version: int, name: str, args: tuple, kwargs: tuple) -> Any:
    store = open_store(path)
    module, _, name = name.rpartition(".")
    helpers = importlib.import_module(f"pada.dashboard.{module}") if module else frames
    fn = getattr(helpers, name, None)
    if fn is not None:
        return fn(store, *args, **dict(kwargs))
    return getattr(store, name)(*args, **dict(kwargs))


def refresh_run_lists() -> None:
    """Forget the cached runs list and picker labels (after a launch, stop or resume)."""
    runs_table.clear()
    run_ids.clear()


def starting(run_id: str) -> processes.Launch | None:
    """This session's launch of `run_id` whose process is alive but has not taken the run over yet."""
    launch = st.session_state.get(LAUNCHES_KEY, {}).get(run_id)
    if launch is None or not launch.alive:
        return None
    path = runs_root() / run_id
    if (path / "run.db").is_file() and open_store(str(path)).state().pid == launch.pid:
        return None  # the loop is running and has recorded its pid
    return launch


def remember_launch(launch: processes.Launch) -> None:
    st.session_state.setdefault(LAUNCHES_KEY, {})[launch.run_id] = launch
    refresh_run_lists()


def q(store: RunStore, name: str, *args: Any, **kwargs: Any) -> Any:
    """`frames.<name>(store, ...)` or `store.<name>(...)`, cached until the run's data changes; a dotted name
    is a helper of another `pada.dashboard` module (`q(store, "evolution.error_estimates")`)."""
    return _cached(str(store.path), store.data_version(), name, args, tuple(sorted(kwargs.items())))


def selected_store() -> RunStore | None:
    """The run picked in the sidebar, or None (no runs, or it disappeared)."""
    run_id = st.session_state.get(RUN_KEY)
    if not run_id:
        return None
    path = runs_root() / run_id
    if not (path / "run.db").is_file():
        return None
    return open_store(str(path))


def require_run() -> RunStore:
    """The selected run; without one the page says how to get one and stops."""
    store = selected_store()
    if store is None:
        st.info("No run selected. Start one on the **Runs** page (or pick one in the sidebar).")
        st.page_link("pages/runs.py", label="Go to Runs", icon=":material/play_circle:")
        st.stop()
    return store


def run_page(title: str, continue_key: str | None = None) -> RunStore:
    """The top of every page about one run: frame, title, the selected run (the page stops without
    one) and its status line; review pages also get the continue button (`continue_key`) and a
    writable store for their edits, every other page a read-only view."""
    require_frame()
    st.title(title)
    store = require_run()
    if continue_key:
        store = editable(store)
    status_line(store)
    if continue_key:
        continue_button(store, key=continue_key)
    return store


def author() -> str:
    return (st.session_state.get(AUTHOR_KEY) or DEFAULT_AUTHOR).strip() or DEFAULT_AUTHOR


# ------------------------------------------------------------- rendering


def status_line(store: RunStore) -> None:
    """One caption under a page title: which run, its status and where the loop is."""
    state = store.state()
    status = frames.effective_status(state.status, state.pid, store.path)
    where = ""
    if state.iteration is not None:
        where = f" · iteration {state.iteration}"
        if state.stage:
            progress = frames.progress_text(frames.stage_progress(store, state.iteration, state.stage))
            where += f" · stage {state.stage}" + (f" ({progress})" if progress else "")
    st.caption(f"Run `{store.run_id}` · **{status}**{where}")


def not_yet(store: RunStore, what: str) -> None:
    """Empty state: nothing of `what` yet, and why (where the run is)."""
    state = store.state()
    status = frames.effective_status(state.status, state.pid, store.path)
    if status in ("running", "created"):
        at = f"at iteration {state.iteration}, stage {state.stage}" if state.stage else "starting"
        st.info(f"No {what} yet: the run is {at}. This page fills in as the run gets there.")
    elif status == "completed":
        st.info(f"This run has no {what}: its method or settings do not produce them "
                f"(e.g. vanilla fine-tuning never analyses errors).")
    else:
        st.info(f"No {what} yet: the run is {status}" + (f" at stage {state.stage}" if state.stage else "")
                + ". Resume it on the Runs page to continue.")


def iteration_picker(iterations: list[int], key: str, label: str = "Iteration", where=st,
                     default: int | None = None) -> int:
    """A select box over `iterations`; `default` (else the newest) first."""
    if len(iterations) == 1:
        where.caption(f"{label} {iterations[0]}")
        return iterations[0]
    if st.session_state.get(key) not in iterations:
        st.session_state.pop(key, None)
    index = iterations.index(default) if default in iterations else len(iterations) - 1
    return where.selectbox(label, iterations, index=index, key=key)


def paged(n_rows: int, key: str) -> tuple[int, int]:
    """A pager under a table: returns (page, page size); no pager for one page."""
    pages = frames.n_pages(n_rows, PAGE_SIZE)
    if pages <= 1:
        return 1, PAGE_SIZE
    page = st.pagination(pages, key=key)
    return int(page or 1), PAGE_SIZE


def show_exception(err: BaseException) -> None:
    """A readable one-paragraph error instead of a traceback (the traceback goes to the server log)."""
    log.exception("dashboard page failed")
    from pada.errors import PadaError

    if isinstance(err, PadaError):
        st.error(str(err))
    else:
        st.error(f"Something went wrong: {type(err).__name__}: {err}. "
                 "The full traceback is in the terminal running `streamlit run`.")


def continue_button(store: RunStore, key: str) -> None:
    """When the run is paused for review: a button that resumes it in the background with the edits."""
    state = store.state()
    if state.status != "awaiting_review":
        return
    review = {"review_strategies": "strategies", "review_qc": "synthetic samples"}.get(state.stage or "", "work")
    st.warning(f"The run is paused in iteration {state.iteration} for your review of its {review}. "
               "Edits and decisions are saved as you make them; continue when done.", icon=":material/pause:")
    if starting(store.run_id):
        st.info("Resuming… the run's process is starting.", icon=":material/hourglass_top:")
        return
    if st.button("Continue run", key=key, type="primary", icon=":material/play_arrow:"):
        try:
            launch = processes.resume_run(store)
        except ValueError as err:
            st.error(str(err))
            return
        remember_launch(launch)
        st.toast(f"Resuming {store.run_id} (pid {launch.pid})")
        st.rerun()


# ---------------------------------------------------------------- charts

PALETTE = ["#2f6fde", "#e4572e", "#29a35a", "#f3a712", "#8e44ad", "#17a2b8", "#d63384", "#6c757d", "#795548",
           "#00897b", "#c0ca33", "#5c6bc0"]  # distinct categorical colours (clusters, categories, methods)


def style(fig, height: int = 360, legend: bool = True):
    """One look for every chart: compact margins, legend under the plot, our palette."""
    top = 50 if fig.layout.title.text else 30
    fig.update_layout(
        height=height, margin={"l": 10, "r": 10, "t": top, "b": 10}, colorway=PALETTE, showlegend=legend,
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "xanchor": "left", "x": 0, "title_text": ""},
    )
    return fig
