"""Evolution: validation errors per category per iteration (the paper's Figure 8) and metrics per iteration.
Comparisons of methods have their own page (pages/compare.py)."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from pada.dashboard import frames
from pages import common

GROUPINGS = {"pattern": "Error pattern (cluster name)", "scenario": "Scenario category (LLM)"}


def error_bars(store) -> None:
    st.subheader("Validation errors per category")
    by = st.segmented_control("Category", list(GROUPINGS), default="pattern", format_func=GROUPINGS.get,
                              key="evolution-by") or "pattern"
    counts = common.q(store, "error_counts_frame", by)
    if counts.empty:
        common.not_yet(store, "validation failures")
        return
    order = counts.groupby("category")["count"].sum().sort_values(ascending=False).index.tolist()
    fig = px.bar(counts, x="iteration", y="count", color="category", barmode="stack",
                 category_orders={"category": order}, text_auto=True, color_discrete_sequence=common.PALETTE)
    common.style(fig, height=460).update_layout(xaxis={"dtick": 1, "title": "iteration"},
                                                yaxis_title="validation failures")
    st.plotly_chart(fig, key="error-bars")
    totals = counts.groupby("iteration")["count"].sum()
    if len(totals) > 1:
        first, last = totals.iloc[0], totals.iloc[-1]
        st.caption(f"{first} validation failures in iteration {totals.index[0]} → {last} in iteration "
                   f"{totals.index[-1]} ({last - first:+d}). Patterns are re-clustered each iteration, so "
                   "names can differ between bars.")


def metric_lines(store) -> None:
    st.subheader("Metrics per iteration")
    metrics = common.q(store, "metrics_frame")
    if metrics.empty:
        common.not_yet(store, "evaluation metrics")
        return
    names = sorted(metrics["metric"].unique())
    headline = frames.headline_metric(frames.run_config(store), names)
    metric = st.selectbox("Metric", names, index=names.index(headline) if headline in names else 0,
                          key="evolution-metric")
    shown = metrics[metrics["metric"] == metric]
    fig = px.line(shown, x="iteration", y="value", color="split", markers=True, color_discrete_sequence=common.PALETTE)
    common.style(fig).update_layout(xaxis={"dtick": 1}, yaxis_title=metric)
    if shown["value"].between(0, 1).all():
        fig.update_yaxes(range=[-0.02, 1.02])  # rates: keep the scale honest
    st.plotly_chart(fig, key="metric-lines")
    table = frames.iteration_table(shown, "split")
    st.dataframe(table, key="metric-table",
                 column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in table.columns})


def main() -> None:
    common.require_frame()
    st.title("Evolution")
    store = common.selected_store()
    if store is not None:
        common.status_line(store)
        left, right = st.columns(2)
        with left:
            error_bars(store)
        with right:
            metric_lines(store)
    else:
        st.info("No run selected: pick one in the sidebar to see how its errors shrink.")
    st.divider()
    st.page_link("pages/compare.py", label="Method comparisons (`python -m pada compare`)",
                 icon=":material/compare_arrows:")


main()
