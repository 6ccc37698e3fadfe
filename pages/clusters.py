"""Clusters: the 2-D map of analysed failures coloured by cluster, the elbow curve, cluster sizes.

Select points (click, box or lasso) or pick clusters under the chart to list their failures.
"""

from __future__ import annotations

import textwrap

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from pada.dashboard import frames
from pages import common


def scatter(points, key: str):
    labels = points.assign(
        label=[frames.cluster_label(c, n) for c, n in zip(points["cluster"], points["category"], strict=False)],
        error_cause=points["error_cause"].map(lambda t: "<br>".join(textwrap.wrap(t, 70)[:6])),  # hover lines
    )
    order = labels.sort_values("cluster")["label"].unique().tolist()
    fig = px.scatter(labels, x="x", y="y", color="label", category_orders={"label": order},
                     color_discrete_sequence=common.PALETTE,
                     custom_data=["failure_id", "error_cause", "scenario", "label"])
    fig.update_traces(
        marker={"size": 9, "opacity": 0.85},
        hovertemplate="<b>%{customdata[0]}</b> · %{customdata[3]}<br>%{customdata[1]}"
                      "<br><i>Scenario: %{customdata[2]}</i><extra></extra>",
    )
    common.style(fig, height=500).update_layout(xaxis_title="UMAP 1", yaxis_title="UMAP 2", dragmode="lasso")
    event = st.plotly_chart(fig, key=key, on_select="rerun", selection_mode=("points", "box", "lasso"))
    selected = [p["customdata"][0] for p in (event.selection.points if event else []) if p.get("customdata")]
    return selected, order


def elbow(clustering) -> None:
    frame = frames.elbow_frame(clustering)
    if frame.empty:
        st.caption(f"K = {clustering.k} (no elbow curve stored).")
        return
    fig = px.line(frame, x="k", y="inertia", markers=True)
    fig.add_vline(x=clustering.k, line_dash="dash", line_color="#d62728",
                  annotation_text=f"chosen K = {clustering.k}", annotation_position="top right")
    chosen = frame[frame["chosen"]]
    fig.add_trace(go.Scatter(x=chosen["k"], y=chosen["inertia"], mode="markers", showlegend=False,
                             marker={"size": 14, "color": "#d62728", "symbol": "star"}))
    common.style(fig, height=300, legend=False).update_layout(xaxis_title="K (clusters)", yaxis_title="k-means inertia",
                                                              xaxis={"dtick": 1})
    st.plotly_chart(fig, key="elbow")


def sizes(store, iteration: int) -> None:
    frame = common.q(store, "cluster_sizes_frame", iteration)
    frame = frame.assign(label=[frames.cluster_label(c, n) for c, n in zip(frame["cluster"], frame["category"],
                                                                           strict=False)])
    fig = px.bar(frame, x="failures", y="label", orientation="h", text="failures", color="label",
                 color_discrete_sequence=common.PALETTE)
    common.style(fig, height=max(200, 40 * len(frame) + 60), legend=False).update_layout(
        yaxis_title="", xaxis_title="failures", yaxis={"autorange": "reversed"})
    st.plotly_chart(fig, key="sizes")


def members(points, selected_ids: list[str], clusters: list[str]) -> None:
    """The failures picked on the chart or by cluster."""
    labels = [frames.cluster_label(c, n) for c, n in zip(points["cluster"], points["category"], strict=False)]
    picked = points[points["failure_id"].isin(selected_ids) | points.assign(label=labels)["label"].isin(clusters)]
    if picked.empty:
        st.caption("Select points on the map (click, box or lasso) or pick clusters above to list their failures.")
        return
    st.markdown(f"**{len(picked)} selected failures**")
    page, size = common.paged(len(picked), f"clusters-page-{len(picked)}")
    st.dataframe(frames.page_slice(picked, page, size)[["failure_id", "cluster", "category", "error_cause",
                                                       "scenario"]],
                 hide_index=True,
                 column_config={"error_cause": st.column_config.TextColumn("Error cause", width="large")})


def main() -> None:
    store = common.run_page("Clusters")
    iterations = [it for it in common.q(store, "analysed_iterations") if common.q(store, "clustering", it)]
    if not iterations:
        common.not_yet(store, "clusters of analysed failures")
        return
    iteration = common.iteration_picker(iterations, "clusters-iteration")
    clustering = common.q(store, "clustering", iteration)
    points = common.q(store, "cluster_frame", iteration)
    st.caption(f"{len(points)} analysed validation failures in {clustering.k} clusters · "
               f"embedder {clustering.embedder or 'unknown'}")
    map_col, side_col = st.columns([3, 2])
    with map_col:
        selected, order = scatter(points, key=f"scatter-{iteration}")
        clusters = st.pills("List the failures of clusters", order, selection_mode="multi",
                            key=f"clusters-pick-{iteration}") or []
    with side_col:
        st.markdown("**Elbow curve**")
        elbow(clustering)
        st.markdown("**Cluster sizes**")
        sizes(store, iteration)
    members(points, selected, clusters)


main()
