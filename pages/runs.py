"""Runs: every run with where it is and what it achieved; launch, stop and resume runs."""

from __future__ import annotations

import streamlit as st
import yaml

from pada.dashboard import frames, processes
from pages import common

LAUNCHES_KEY = common.LAUNCHES_KEY


def launched(launch: processes.Launch, message: str) -> None:
    common.remember_launch(launch)
    st.session_state[common.PENDING_RUN_KEY] = launch.run_id
    st.toast(message)
    st.rerun()


def launch_quickstart() -> None:
    with st.spinner("Starting the offline quickstart…"):
        launch = processes.launch_run(processes.build_config({}), common.runs_root())
    launched(launch, f"Started {launch.run_id} (pid {launch.pid})")


def empty_state() -> None:
    st.subheader("No runs yet")
    st.markdown(
        "A run fine-tunes a small model, lets an LLM explain its validation errors, clusters them into "
        "patterns, drafts a strategy per pattern, generates and quality-checks synthetic data, and retrains.\n\n"
        "The **offline quickstart** uses only bundled models (SmolLM2-135M learns SQuAD; Qwen2.5-Coder 1.5B "
        "analyses and generates, served by llama.cpp; the 0.5B judges). It needs no API key and takes about "
        "20 minutes on a 2-core CPU."
    )
    if st.button("Launch the offline quickstart", type="primary", icon=":material/rocket_launch:"):
        launch_quickstart()
    st.caption(f"Or from a terminal: `python -m pada run --config configs/quickstart.yaml --runs-root "
               f"{common.runs_root()}`. Runs are read from `{common.runs_root()}` (set `PADA_RUNS_DIR` to change it).")


def pending_launches(known: set[str]) -> None:
    """Runs this session started whose process has not created the run yet (or died before it could)."""
    for run_id, launch in list(st.session_state.get(LAUNCHES_KEY, {}).items()):
        if run_id in known:
            continue
        tail = processes.log_tail(launch.log_path, 15)
        if launch.alive:
            st.info(f"Starting run `{run_id}` (pid {launch.pid})…", icon=":material/hourglass_top:")
        else:
            st.error(f"Run `{run_id}` ended before it started. Its log (`{launch.log_path}`):")
            st.code(tail or "(empty)", language="text")
            if st.button("Dismiss", key=f"dismiss-{run_id}"):
                st.session_state[LAUNCHES_KEY].pop(run_id, None)
                st.rerun()


def runs_table(frame) -> None:
    st.dataframe(
        frame.drop(columns=["error"]), hide_index=True,
        column_config={
            "run": st.column_config.TextColumn("Run", width="medium"), "task": "Task", "method": "Method",
            "status": "Status", "iteration": "Iteration", "stage": "Stage", "metric": "Metric",
            "validation": st.column_config.NumberColumn("Validation", format="%.3f"),
            "test": st.column_config.NumberColumn("Test", format="%.3f"),
            "tokens": st.column_config.NumberColumn("Tokens", format="%d"),
            "cost_usd": st.column_config.NumberColumn("Cost ($)", format="%.4f"),
            "created": "Created",
        },
    )


def selected_run_panel() -> None:
    """Status, progress, recent events, log and stop / resume of the run picked in the sidebar."""
    store = common.selected_store()
    if store is None:
        return
    state = store.state()
    status = frames.effective_status(state.status, state.pid, store.path)
    config = frames.run_config(store)
    st.subheader(f"Run `{store.run_id}`")
    cols = st.columns(4)
    cols[0].metric("Status", status)
    cols[1].metric("Iteration", f"{state.iteration or 0} / {config.get('iterations', '?')}")
    cols[2].metric("Stage", state.stage or "–")
    totals = frames.usage_totals(store)
    cols[3].metric("LLM cost", f"${totals['cost_usd']:.4f}")
    cols[3].caption(f"{totals['tokens']:,} tokens in {totals['calls']:,} calls")
    progress = frames.stage_progress(store, state.iteration, state.stage)
    if progress and progress[1]:
        done, total = progress
        st.progress(min(done / total, 1.0), text=f"{state.stage}: {done}/{total}")
    if state.error and status == "failed":
        st.error(f"Failed: {state.error}")
    elif state.error and status in ("stopped", "interrupted"):
        st.warning(f"{status.capitalize()}: {state.error}")
    elif status == "interrupted":
        st.warning("Its process ended without recording why (killed or crashed). Resume continues from the "
                   "last completed stage.")
    actions(store, status)
    events = frames.events_frame(store, 15)
    with st.expander("Recent events", expanded=status in frames.ACTIVE_STATUSES):
        if events.empty:
            st.caption("No events yet.")
        else:
            st.dataframe(events, hide_index=True, column_config={
                "at": st.column_config.TextColumn("At", width="small"), "level": "Level",
                "iteration": st.column_config.NumberColumn("Iter.", format="%d"), "stage": "Stage",
                "message": st.column_config.TextColumn("Message", width="large")})
    tail = processes.log_tail(processes.launch_log(common.runs_root(), store.run_id), 25)
    if tail:
        with st.expander("Process log (last lines)"):
            st.code(tail, language="text")


def actions(store, status: str) -> None:
    """Stop a running run; resume a paused, stopped, failed or interrupted one.

    Whether it runs is asked of its lock (`store.runner()`), not of the stored pid."""
    if common.starting(store.run_id):
        st.info("Starting… the run's process is loading.", icon=":material/hourglass_top:")
        return
    if status in frames.ACTIVE_STATUSES and store.runner() is not None:
        if st.button("Stop", icon=":material/stop:", key="stop-run",
                     help="SIGTERM to the run's processes; resume later continues from the last completed stage"):
            with st.spinner("Stopping…"):
                message = processes.stop_run(store)
            common.refresh_run_lists()
            st.toast(message)
            st.rerun()
    elif status in ("awaiting_review", "stopped", "failed", "interrupted", "created"):
        label = "Continue run" if status == "awaiting_review" else "Resume"
        if st.button(label, icon=":material/play_arrow:", key="resume-run", type="primary",
                     help="Continue in the background from the last completed stage"):
            try:
                launch = processes.resume_run(store)
            except ValueError as err:
                st.error(str(err))
                return
            launched(launch, f"Resuming {store.run_id} (pid {launch.pid})")
    if status == "awaiting_review":
        st.info("Paused for review: edit strategies on **Patterns & strategies** or decide on samples in "
                "**Synthetic review**, then continue.")


def any_active(frame) -> bool:
    """A run is running or starting: the live view keeps refreshing."""
    launches = st.session_state.get(LAUNCHES_KEY, {}).values()
    return bool(frame["status"].isin(frames.ACTIVE_STATUSES).any()) or any(launch.alive for launch in launches)


def live_view(refreshing: bool) -> None:
    frame = common.runs_table(str(common.runs_root()))
    pending_launches(set(frame["run"]))
    if not frame.empty:
        runs_table(frame)
    selected_run_panel()
    if refreshing != any_active(frame):
        st.rerun(scope="app")  # start or stop refreshing (run_every is fixed per fragment)


def new_run_form(expanded: bool, quickstart_button: bool = True) -> None:
    from pada.config import METHODS, PAUSE_POINTS
    from pada.tasks import TASK_NAMES

    base = processes.quickstart_dict()
    with st.expander("Launch a new run", expanded=expanded, icon=":material/add_circle:"):
        with st.form("new-run"):
            st.caption("Defaults are the offline quickstart (`configs/quickstart.yaml`).")
            c1, c2, c3 = st.columns(3)
            task = c1.selectbox("Task", TASK_NAMES, index=TASK_NAMES.index(base["task"]))
            method = c2.selectbox("Method", METHODS, index=METHODS.index(base["method"]))
            iterations = c3.number_input("Iterations", 1, 20, int(base["iterations"]))
            c1, c2, c3 = st.columns(3)
            train_size = c1.number_input("Training examples", 1, 100_000, int(base["data"]["train_size"]))
            val_size = c2.number_input("Validation examples", 1, 100_000, int(base["data"]["val_size"]))
            test_size = c3.number_input("Test examples", 1, 100_000, int(base["data"]["test_size"] or 500))
            c1, c2, c3 = st.columns(3)
            slm = c1.text_input("Small model (SLM)", base["slm"]["model"])
            llm = c2.text_input("Analysis / generation LLM", base["llm"]["model"])
            judge = c3.text_input("Quality-control LLM", base["judge"]["model"])
            c1, c2 = st.columns(2)
            pause_after = c1.multiselect("Pause for review after", PAUSE_POINTS, default=base["pause_after"],
                                         help="The run waits for you after drafting strategies and/or after QC.")
            seed = c2.number_input("Seed", 0, 2**31 - 1, int(base["seed"]))
            extra = st.text_area("More settings (YAML, merged last)", "", height=80,
                                 placeholder="qc:\n  max_regenerations: 3")
            submitted = st.form_submit_button("Launch", type="primary", icon=":material/rocket_launch:")
        if submitted:
            overrides = {
                "task": task, "method": method, "iterations": int(iterations), "seed": int(seed),
                "pause_after": list(pause_after),
                "data": {"train_size": int(train_size), "val_size": int(val_size), "test_size": int(test_size)},
                "slm": {"model": slm.strip()}, "llm": {"model": llm.strip()}, "judge": {"model": judge.strip()},
            }
            launch_from_form(overrides, extra, base)
        if quickstart_button and st.button("Launch the offline quickstart as is", icon=":material/rocket_launch:",
                                           key="quickstart-2"):
            launch_quickstart()


def launch_from_form(overrides: dict, extra: str, base: dict) -> None:
    from pada.config import preflight
    from pada.errors import PadaError

    try:
        more = yaml.safe_load(extra) if extra.strip() else {}
        if more is not None and not isinstance(more, dict):
            raise PadaError("More settings: expected YAML fields (name: value), one per line")
        config = processes.build_config(processes.merged(overrides, more or {}), base)
        preflight(config)  # data, task, sizes and model: refused here, before a run directory exists
    except yaml.YAMLError as err:
        st.error(f"More settings are not valid YAML: {err}")
        return
    except PadaError as err:
        st.error(f"Cannot launch: {err}")
        return
    with st.spinner("Starting the run…"):
        launch = processes.launch_run(config, common.runs_root())
    launched(launch, f"Started {launch.run_id} (pid {launch.pid})")


def main() -> None:
    common.require_frame()
    st.title("Runs")
    frame = common.runs_table(str(common.runs_root()))
    has_launches = bool(st.session_state.get(LAUNCHES_KEY))
    if frame.empty and not has_launches:
        empty_state()
        new_run_form(expanded=False, quickstart_button=False)
        return
    active = any_active(frame)
    st.fragment(live_view, run_every=common.REFRESH_S if active else None)(active)
    if active:
        st.caption(f"Refreshing every {common.REFRESH_S:.0f} s while a run is active.")
    new_run_form(expanded=False)


main()
