"""Evolution: validation failures per pattern per iteration (the paper's Figure 8), followed across iterations by
one pattern taxonomy; which validation items each iteration fixed and broke; metrics per iteration.
Comparisons of methods have their own page (pages/compare.py)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from pada.dashboard import evolution, frames
from pages import common

GROUPINGS = {"pattern": "Error pattern (followed across iterations)", "scenario": "Scenario category (LLM)"}
NOT_ANALYSED_COLOUR = "#adb5bd"
SEGMENT_COLUMNS = ["failure_id", "input", "ground_truth", "prediction", "error_cause", "scenario"]
ITEM_COLUMNS = ["example_id", "status", "earlier_pattern", "later_pattern", "input", "ground_truth",
                "earlier_prediction", "later_prediction"]
NUMBERS = {"failures": "failure_ids", "fixed": "fixed_ids", "still failing": "still_failing_ids",
           "new failures": "new_failure_ids"}


# ---------------------------------------------------------- errors per pattern


def error_bars(store) -> None:
    st.subheader("Validation failures per pattern")
    by = st.segmented_control("Category", list(GROUPINGS), default="pattern", format_func=GROUPINGS.get,
                              key="evolution-by") or "pattern"
    if by == "scenario":
        scenario_bars(store)
        return
    estimates = common.q(store, "evolution.error_estimates")
    if estimates.empty:
        common.not_yet(store, "validation failures")
        return
    coverage = evolution.has_taxa(common.q(store, "evolution.taxonomy_table"))
    if coverage != "all":
        st.info("This run was stored before patterns were followed across iterations"
                + (" for some of its iterations" if coverage == "some" else "")
                + ": those bars use their own iteration's pattern names, which can differ between bars.",
                icon=":material/info:")
    event = st.plotly_chart(pattern_chart(estimates), key="error-bars", on_select="rerun", selection_mode="points")
    sizes = estimates.drop_duplicates("iteration")
    st.caption("Each part is an **estimate**: the pattern's share of the analysed failures (a random subsample) "
               "scaled to all validation failures, so a bar's height is the number of failures. "
               + "; ".join(f"iteration {r.iteration}: from {r.analysed} analysed of {r.failures}"
                           for r in sizes.itertuples()) + ".")
    totals = sizes.set_index("iteration")["failures"]
    if len(totals) > 1:
        first, last = int(totals.iloc[0]), int(totals.iloc[-1])
        st.caption(f"{first} validation failures in iteration {totals.index[0]} → {last} in iteration "
                   f"{totals.index[-1]} ({last - first:+d}).")
    with st.expander("Estimated failures per pattern (a pattern not found in an iteration shows 0)"):
        table = frames.iteration_table(estimates.rename(columns={"estimate": "value"}), "label", sort=False)
        st.dataframe(table.astype("Int64"), key="estimate-table")
    segment_list(store, estimates, evolution.selected_segment(event.selection.points if event else [], estimates))


def pattern_chart(estimates: pd.DataFrame):
    """Stacked bars, one colour per taxon in every iteration; hover: the iteration's own name and the sample."""
    shown = estimates[estimates["estimate"] > 0].assign(segment=estimates["cluster_id"].fillna(-1).astype(int))
    order = shown.groupby("label", sort=False)["estimate"].sum().sort_values(ascending=False).index.tolist()
    fig = px.bar(shown, x="iteration", y="estimate", color="label", barmode="stack", text_auto=True,
                 category_orders={"label": order}, color_discrete_map=colours(estimates),
                 custom_data=["iteration", "segment", "name", "members", "analysed", "failures"])
    fig.update_traces(hovertemplate="<b>%{fullData.name}</b><br>iteration %{x}: about %{y} of %{customdata[5]} "
                                    "failures<br>this iteration's name: %{customdata[2]}<br>%{customdata[3]} of "
                                    "the %{customdata[4]} analysed failures<extra></extra>")
    return common.style(fig, height=460).update_layout(
        xaxis={"dtick": 1, "title": "iteration"}, yaxis_title="validation failures (parts estimated)")


def colours(estimates: pd.DataFrame) -> dict[str, str]:
    """A fixed colour per taxon id (the same in every iteration and every session); names without a taxon
    (old runs) take the palette in order of appearance; the unanalysed part is grey."""
    mapping, spare = {}, 0
    for label, taxon_id in estimates.drop_duplicates("label")[["label", "taxon_id"]].itertuples(index=False):
        if label == evolution.NOT_ANALYSED:
            mapping[label] = NOT_ANALYSED_COLOUR
        elif pd.isna(taxon_id):
            mapping[label], spare = common.PALETTE[spare % len(common.PALETTE)], spare + 1
        else:
            mapping[label] = common.PALETTE[int(taxon_id) % len(common.PALETTE)]
    return mapping


def segment_list(store, estimates: pd.DataFrame, clicked: tuple[int, int | None] | None) -> None:
    """The failures behind the clicked segment (or the one picked in the box below the chart)."""
    parts = estimates[estimates["estimate"] > 0]
    options = [(int(r.iteration), None if pd.isna(r.cluster_id) else int(r.cluster_id)) for r in parts.itertuples()]
    names = {(int(r.iteration), None if pd.isna(r.cluster_id) else int(r.cluster_id)): r for r in parts.itertuples()}
    picked = st.selectbox("Failures of a segment (or click one)", options, index=None, key="evolution-segment",
                          format_func=lambda o: f"iteration {o[0]} · {names[o].label}",
                          placeholder="click a bar segment or pick one")
    segment = clicked if clicked in names else picked
    if segment is None:
        return
    row = names[segment]
    failures = common.q(store, "evolution.segment_failures", *segment)
    what = "analysed failures" if segment[1] is not None else "failures outside the analysed subsample"
    st.markdown(f"**Iteration {row.iteration} · {row.label}** — {len(failures)} {what}"
                + (f" (about {row.estimate} of all {row.failures} failures)" if segment[1] is not None else ""))
    st.dataframe(failures[SEGMENT_COLUMNS], key="segment-failures", hide_index=True)


def scenario_bars(store) -> None:
    """The LLM's scenario categories, counted over the analysed failures (no taxonomy, no estimate)."""
    counts = common.q(store, "error_counts_frame", "scenario")
    if counts.empty:
        common.not_yet(store, "validation failures")
        return
    order = counts.groupby("category")["count"].sum().sort_values(ascending=False).index.tolist()
    fig = px.bar(counts, x="iteration", y="count", color="category", barmode="stack",
                 category_orders={"category": order}, text_auto=True, color_discrete_sequence=common.PALETTE)
    common.style(fig, height=460).update_layout(xaxis={"dtick": 1, "title": "iteration"},
                                                yaxis_title="validation failures")
    st.plotly_chart(fig, key="error-bars")
    st.caption("Counted, not estimated: 'Unanalysed' are the failures outside the analysed subsample.")


# ---------------------------------------------------------- fixed and broken


def fixed_and_broken(store) -> None:
    st.subheader("Fixed and broken validation items")
    iterations = common.q(store, "evolution.evaluated_iterations")
    if len(iterations) < 2:
        st.info("Needs two evaluated iterations: the run has "
                + (f"only iteration {iterations[0]}." if iterations else "none yet."))
        return
    left, right = st.columns(2)
    earlier = left.selectbox("From iteration", iterations[:-1], index=len(iterations) - 2, key="evolution-from")
    later_options = [i for i in iterations if i > earlier]
    later = right.selectbox("To iteration", later_options, index=len(later_options) - 1, key="evolution-to")
    items = common.q(store, "evolution.transitions", earlier, later)
    counts = evolution.transition_counts(items)
    for column, row in zip(st.columns(len(counts)), counts.itertuples()):
        column.metric(row.status, row.count)
    status = st.segmented_control("Show the items that are", list(evolution.STATUSES), key="evolution-status")
    if status:
        item_table(items, counts.set_index("status").at[status, "ids"], key="status-items")

    st.markdown(f"**Per pattern of iteration {earlier}**: its analysed failures, how many of them iteration "
                f"{later} fixed, and iteration {later}'s new failures in the same pattern")
    table = evolution.pattern_transitions(items, common.q(store, "evolution.taxonomy_table"), earlier, later)
    event = st.dataframe(table[["pattern", "earlier_name", "later_name", "failures", "fixed", "still_failing",
                                "new_failures"]], key="pattern-transitions", hide_index=True,
                         on_select="rerun", selection_mode="single-row")
    rows = event.selection.rows if event else []
    if not rows:
        st.caption("Select a row to see the items behind its numbers.")
        return
    chosen = table.iloc[rows[0]]
    number = st.segmented_control(f"Items of {chosen['pattern']}", list(NUMBERS), default="failures",
                                  key="evolution-number") or "failures"
    item_table(items, chosen[NUMBERS[number]], key="pattern-items")


def item_table(items: pd.DataFrame, ids: list[str], key: str) -> None:
    shown = items[items["example_id"].isin(ids)][ITEM_COLUMNS]
    st.dataframe(shown, key=key, hide_index=True)
    st.caption(f"{len(shown)} items. Inputs are stored for failures only: an item right in both iterations "
               "shows its id and predictions.")


# ---------------------------------------------------------------- metrics


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
        error_bars(store)
        st.divider()
        fixed_and_broken(store)
        st.divider()
        metric_lines(store)
    else:
        st.info("No run selected: pick one in the sidebar to see how its errors shrink.")
    st.divider()
    st.page_link("pages/compare.py", label="Method comparisons (`python -m pada compare`)",
                 icon=":material/compare_arrows:")


main()
