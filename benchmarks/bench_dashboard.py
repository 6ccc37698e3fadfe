"""Time every dashboard page on a big run, headless with Streamlit's AppTest.

    .venv/bin/python benchmarks/bench_dashboard.py                 # 10 iterations, 20,000 samples
    .venv/bin/python benchmarks/bench_dashboard.py --samples 200000

Builds the run with the store API through `bench_store.write_run` (per
iteration: predictions and failures for 3 splits, analyses, a clustering,
patterns, strategies with edits, samples with every QC attempt, LLM calls,
the training set), then opens each page the way a person would: from the
Runs page through the navigation, in a fresh session with empty caches
("cold") and again in the same session ("warm", cached queries). Wall-clock
seconds of the whole script run, on whatever machine runs it; nothing is
asserted. The target is under 2 s per page.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PAGES = ["runs", "errors", "clusters", "strategies", "samples", "evolution", "cost"]
TARGET_S = 2.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--samples", type=int, default=20_000, help="synthetic samples in the whole run")
    parser.add_argument("--llm-calls", type=int, default=5000, help="LLM calls recorded per iteration")
    parser.add_argument("--repeat", type=int, default=3, help="cold and warm measurements per page")
    parser.add_argument("--runs-dir", help="reuse or keep the run here (default: a temporary directory)")
    return parser.parse_args()


def build_run(root: Path, args: argparse.Namespace) -> str:
    """Write the big run once (reused when `--runs-dir` already holds it)."""
    import bench_store

    from pada.store import RunStore, list_runs

    existing = list_runs(root)
    if existing:
        return existing[0].run_id
    store_args = argparse.Namespace(iterations=args.iterations, samples=args.samples, train=1000, validation=500,
                                    test=500, clusters=8, llm_calls=args.llm_calls, repeat=1)
    start = time.perf_counter()
    store = RunStore.create({"task": "gsm8k", "method": "pada", "iterations": args.iterations},
                            runs_root=root, run_id="big-run")
    bench_store.write_run(store, store_args)
    store.set_current(args.iterations, None)
    store.set_status("completed")
    print(f"built {store.sample_count()} samples over {args.iterations} iterations in "
          f"{time.perf_counter() - start:.1f} s")
    store.close()
    return "big-run"


def clear_caches() -> None:
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()


def time_page(page: str) -> tuple[float, float]:
    """(cold, warm) seconds to open `page`: a fresh session with empty caches, then the same page again."""
    from streamlit.testing.v1 import AppTest

    clear_caches()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()  # lands on Runs; the page switch below is what a click in the navigation costs
    start = time.perf_counter()
    if page != "runs":
        at.switch_page(f"pages/{page}.py")
    at.run()
    cold = time.perf_counter() - start
    start = time.perf_counter()
    at.run()
    warm = time.perf_counter() - start
    problems = [e.value for e in at.exception] + [e.value for e in at.error]
    if problems:
        raise SystemExit(f"{page}: {problems[0]}")
    return cold, warm


def main() -> int:
    args = parse_args()
    root = Path(args.runs_dir) if args.runs_dir else Path(tempfile.mkdtemp(prefix="bench_dashboard_"))
    os.environ["PADA_RUNS_DIR"] = str(root)
    try:
        build_run(root, args)
        time_page("runs")  # imports (pandas, plotly, the store) are paid once, not by the first page timed
        print(f"\n{'page':<12} {'cold':>8} {'warm':>8}   (median of {args.repeat}, seconds; target < {TARGET_S} s)")
        worst = 0.0
        for page in PAGES:
            runs = [time_page(page) for _ in range(args.repeat)]
            cold = statistics.median(r[0] for r in runs)
            warm = statistics.median(r[1] for r in runs)
            worst = max(worst, cold)
            print(f"{page:<12} {cold:8.3f} {warm:8.3f}")
        verdict = "within" if worst < TARGET_S else "OVER"
        print(f"\nslowest page, cold: {worst:.3f} s ({verdict} the {TARGET_S} s target)")
    finally:
        if not args.runs_dir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
