"""Compare: the table `python -m pada compare` wrote (each method at the iteration validation selects, mean and
std over seeds, difference to vanilla with its paired bootstrap interval) and the test metric per iteration of
every method, with the selected iterations marked."""

from __future__ import annotations

from pathlib import Path

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from pada.dashboard import frames
from pages import common


@st.cache_data(ttl=30)
def load(path: str, mtime: float):
    """The comparison's per-iteration rows and its summary (None for a table from before summaries)."""
    del mtime  # part of the cache key only: a rewritten table is read again
    return frames.read_comparison(Path(path)), frames.read_comparison_summary(Path(path))


def summary_table(summary, metric: str) -> None:
    st.subheader("Selected by validation")
    shown = summary[["method", "seeds", "selected_iterations", "test_mean", "test_std", "validation_mean",
                     "difference_vs_vanilla", "ci_low", "ci_high", "ci_items", "synthetic", "tokens", "cost_usd"]].copy()
    for column in ("test_mean", "test_std", "validation_mean", "difference_vs_vanilla", "ci_low", "ci_high"):
        shown[column] = 100 * shown[column]
    points = {"format": "%.1f"}
    st.dataframe(shown.set_index("method"), key="compare-summary", column_config={
        "seeds": st.column_config.TextColumn("seeds"),
        "selected_iterations": st.column_config.TextColumn("selected iteration (per seed)"),
        "test_mean": st.column_config.NumberColumn(f"test {metric} (%)", **points),
        "test_std": st.column_config.NumberColumn("std over seeds", **points),
        "validation_mean": st.column_config.NumberColumn(f"validation {metric} (%)", **points),
        "difference_vs_vanilla": st.column_config.NumberColumn("Δ vs vanilla (points)", format="%+.1f"),
        "ci_low": st.column_config.NumberColumn("95% CI low", format="%+.1f"),
        "ci_high": st.column_config.NumberColumn("95% CI high", format="%+.1f"),
        "ci_items": st.column_config.NumberColumn("CI items", format="%d"),
        "synthetic": st.column_config.NumberColumn("synthetic samples", format="%.0f"),
        "tokens": st.column_config.NumberColumn("LLM tokens per run", format="%.0f"),
        "cost_usd": st.column_config.NumberColumn("cost per run ($)", format="%.4f"),
    })
    resamples = int(summary["resamples"].iloc[0]) if "resamples" in summary and len(summary) else 10_000
    st.caption(f"Per seed, the iteration with the best validation {metric} is reported (the test set never picks "
               "it); test and std are the mean and sample standard deviation over seeds. Δ is the method minus "
               "vanilla on the same test items, paired by seed; the 95% interval is a paired percentile bootstrap "
               f"over test items ({resamples:,} resamples), each item drawn with all its seeds, so it reflects "
               "which test items were drawn, not seed-to-seed spread (that is the std). An interval that "
               "excludes 0 is a difference the test set resolves.")


def curves(frame, metric: str) -> None:
    st.subheader(f"Test {metric} per iteration")
    lines, marks = frames.comparison_curves(frame)
    several = bool((lines["seeds"] > 1).any())
    fig = px.line(lines, x="iteration", y="value", color="method", markers=True,
                  color_discrete_sequence=common.PALETTE)
    colours = {trace.name: trace.line.color for trace in fig.data}
    for method, mine in marks.groupby("method", sort=False):
        fig.add_trace(go.Scatter(
            x=mine["iteration"], y=mine["value"], mode="markers", name=f"{method}: selected", showlegend=False,
            marker={"symbol": "star", "size": 15, "color": colours.get(method), "line": {"width": 1, "color": "#222"}},
            customdata=mine[["seed"]], hovertemplate="%{y:.3f} at iteration %{x} (selected, seed %{customdata[0]})"
                                                     "<extra>" + str(method) + "</extra>"))
    common.style(fig, height=420).update_layout(xaxis={"dtick": 1, "title": "iteration"},
                                                yaxis_title=f"test {metric}")
    if lines["value"].between(0, 1).all():
        fig.update_yaxes(range=[-0.02, 1.02])
    st.plotly_chart(fig, key="compare-curves")
    st.caption("Stars: the iteration validation selected" + (
        " for each seed (at that seed's test value); lines are the mean over seeds." if several else "."))
    table = frames.iteration_table(lines, "method", sort=False)
    st.dataframe(table, key="compare-iterations",
                 column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in table.columns})


def main() -> None:
    common.require_frame()
    st.title("Compare")
    paths = frames.find_comparisons(common.runs_root())
    if not paths:
        st.info("No comparison yet. `python -m pada compare --config configs/quickstart.yaml --seeds 3 "
                "--ablations` runs every method (and PaDA's ablations) with the same budget and writes the table "
                f"under `{common.runs_root()}/comparisons/`.")
        return
    path = st.selectbox("Comparison", paths, format_func=lambda p: str(p.parent.name), key="compare-path")
    try:
        frame, summary = load(str(path), path.stat().st_mtime)
    except (ValueError, OSError) as err:
        st.error(str(err))
        return
    if frame.empty:
        st.info(f"`{path}` has no rows yet.")
        return
    metric = str(frame["metric"].iloc[0])
    if summary is not None and not summary.empty:
        summary_table(summary, metric)
    else:
        st.caption("This table predates seeds and intervals: rerun `python -m pada compare` (finished runs are "
                   "reused) for the summary with confidence intervals.")
    curves(frame, metric)
    st.caption(f"From `{path}`.")


main()
