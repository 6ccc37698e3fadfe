"""`python -m pada run --config FILE`: create a run and run the loop to the end (or a pause point)."""

from __future__ import annotations

HELP = "create a run from a YAML config and run PaDA-Agent's loop"


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="YAML run config (see configs/)")
    parser.add_argument("--runs-root", default=None, help="where runs live (default $PADA_RUNS_DIR or runs/)")
    parser.add_argument("--run-id", default=None, help="name for the run directory (default: time-task-method)")
    parser.add_argument("--method", default=None, help="override the config's method")


def run(args) -> int:
    from pada.config import load_config, preflight
    from pada.pipeline import start_run

    config = load_config(args.config)
    if args.method:
        from pada.config import from_dict

        overridden = from_dict(dict(config.to_dict(), method=args.method), source="--method")
        overridden._source, overridden._lines = config._source, config._lines
        config = overridden
    preflight(config)  # everything is checked before the run directory exists
    store = start_run(config, runs_root=args.runs_root, run_id=args.run_id)
    print(f"run {store.run_id} in {store.path}", flush=True)
    return execute(store)


def execute(store) -> int:
    """Run the loop on `store` in this process and print where it ended."""
    import json

    from pada.pipeline import Pipeline
    from pada.runs import overview

    configure_logging()
    stop_on_sigterm()
    with store.runner_lock():  # one runner per run: a second one exits here with the holder's pid
        pipeline = Pipeline(store)
        pipeline.approve_pending_review()
        status = pipeline.run()
    print(json.dumps(overview(store).to_dict()), flush=True)
    return 0 if status in ("completed", "awaiting_review") else 1


def configure_logging() -> None:
    import logging
    import os

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("LiteLLM", "litellm", "httpx", "urllib3", "numba", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def stop_on_sigterm() -> None:
    """Turn SIGTERM (the dashboard's stop button) into KeyboardInterrupt, so the run records `stopped`."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt("stopped by SIGTERM")

    signal.signal(signal.SIGTERM, handler)
