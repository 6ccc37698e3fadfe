"""`python -m pada resume RUN`: continue a paused, stopped, failed or killed run from its last completed stage."""

from __future__ import annotations

HELP = "continue a run from its last completed stage (after a pause, a stop or a crash)"


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run id (under the runs root) or run directory")
    parser.add_argument("--runs-root", default=None, help="where runs live (default $PADA_RUNS_DIR or runs/)")


def run(args) -> int:
    import os

    from pada.commands.run import execute
    from pada.errors import PadaError
    from pada.runs import process_alive
    from pada.store import RunStore

    store = RunStore.open(args.run, runs_root=args.runs_root)
    state = store.state()
    if state.status == "completed":
        print(f"run {store.run_id} is already completed")
        return 0
    if state.status == "running" and process_alive(state.pid) and state.pid != os.getpid():
        raise PadaError(f"run {store.run_id} is still running (pid {state.pid}); stop it first")
    print(f"resuming run {store.run_id} at iteration {state.iteration}, stage {state.stage}", flush=True)
    return execute(store)
