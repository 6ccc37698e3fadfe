"""`python -m pada resume RUN`: continue a paused, stopped, failed or killed run from its last completed stage."""

from __future__ import annotations

HELP = "continue a run from its last completed stage (after a pause, a stop or a crash)"


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run id (under the runs root) or run directory")
    parser.add_argument("--runs-root", default=None, help="where runs live (default $PADA_RUNS_DIR or runs/)")


def run(args) -> int:
    from pada.commands.run import execute
    from pada.store import RunStore

    store = RunStore.open(args.run, runs_root=args.runs_root)
    # The run's lock, not its stored pid, says whether it is running: a second runner (another resume,
    # the dashboard's) fails here with one line naming the pid that holds it.
    with store.runner_lock():
        state = store.state()
        if state.status == "completed":
            print(f"run {store.run_id} is already completed")
            return 0
        print(f"resuming run {store.run_id} at iteration {state.iteration}, stage {state.stage}", flush=True)
        return execute(store)
