"""Errors: an iteration's failures with the LLM's error cause and scenario, their cluster; filter, search, page."""

from __future__ import annotations

import streamlit as st

from pada.dashboard import frames
from pages import common

SPLITS = {"validation": "Validation", "train": "Training"}


def filters(frame) -> tuple[int | None, str | None, str]:
    c1, c2, c3 = st.columns([1, 1, 2])
    labels = frame.dropna(subset=["cluster"]).drop_duplicates("cluster").sort_values("cluster")
    cluster_options = [None, *labels["cluster"].astype(int).tolist()]
    names = dict(zip(labels["cluster"].astype(int), labels["category"], strict=False))
    cluster = c1.selectbox("Cluster", cluster_options, key="errors-cluster",
                           format_func=lambda c: "All" if c is None else frames.cluster_label(c, names.get(c)))
    scenarios = sorted(s for s in frame["scenario"].dropna().unique() if s)
    scenario = c2.selectbox("Scenario category", [None, *scenarios], key="errors-scenario",
                            format_func=lambda s: "All" if s is None else s)
    search = c3.text_input("Search", key="errors-search", placeholder="words in the question, answer, cause…")
    return cluster, scenario, search


def table(rows) -> None:
    shown = rows.assign(
        input=rows["input"].map(lambda t: frames.shorten(t, 180)),
        prediction=rows["prediction"].map(lambda t: frames.shorten(t, 80)),
        ground_truth=rows["ground_truth"].map(lambda t: frames.shorten(t, 80)),
    )
    st.dataframe(
        shown[["failure_id", "input", "ground_truth", "prediction", "error_cause", "scenario", "cluster",
               "category"]],
        hide_index=True,
        column_config={
            "failure_id": "Failure", "input": st.column_config.TextColumn("Input", width="large"),
            "ground_truth": "Ground truth", "prediction": "Prediction",
            "error_cause": st.column_config.TextColumn("Error cause (LLM)", width="large"),
            "scenario": "Scenario", "cluster": st.column_config.NumberColumn("Cluster", format="%d"),
            "category": "Pattern",
        },
    )


def detail(rows) -> None:
    """The full text of one failure of the page."""
    failure_id = st.selectbox("Show one failure in full", rows["failure_id"].tolist(), key="errors-detail")
    row = rows[rows["failure_id"] == failure_id].iloc[0]
    left, right = st.columns(2)
    with left:
        st.markdown("**Input**")
        st.text(row["input"])
    with right:
        st.markdown(f"**Ground truth:** {row['ground_truth']}")
        st.markdown(f"**Prediction:** {row['prediction']}"
                    + (f"  (read as `{row['extracted']}`)" if row["extracted"] else ""))
        st.markdown(f"**Error cause:** {row['error_cause'] or '— not analysed'}")
        st.markdown(f"**Scenario:** {row['scenario'] or '—'}")
        if row["cluster"] is not None and str(row["cluster"]) != "<NA>":
            st.markdown(f"**Cluster:** {frames.cluster_label(int(row['cluster']), row['category'])}")


def main() -> None:
    store = common.run_page("Errors")
    iterations = common.q(store, "analysed_iterations")
    if not iterations:
        common.not_yet(store, "evaluated failures")
        return
    c1, c2, _ = st.columns([1, 1, 2])
    iteration = common.iteration_picker(iterations, "errors-iteration", where=c1)
    split = c2.segmented_control("Split", list(SPLITS), default="validation", format_func=SPLITS.get,
                                 key="errors-split") or "validation"
    frame = common.q(store, "failures_frame", iteration, split)
    if frame.empty:
        st.success(f"No {SPLITS[split].lower()} failures in iteration {iteration}.")
        return
    cluster, scenario, search = filters(frame)
    rows = frames.filter_failures(frame, cluster=cluster, scenario=scenario, search=search)
    st.caption(f"{len(rows)} of {len(frame)} {SPLITS[split].lower()} failures · "
               f"{frame['error_cause'].notna().sum()} analysed by the LLM")
    if rows.empty:
        st.info("No failure matches these filters.")
        return
    page, size = common.paged(len(rows), f"errors-page-{iteration}-{split}-{cluster}-{scenario}-{search}")
    page_rows = frames.page_slice(rows, page, size)
    table(page_rows)
    detail(page_rows)


main()
