"""Clusters: the 2-D map of analysed failures coloured by cluster, the elbow curve, cluster sizes; or one map
across iterations (one fit over the failures of several iterations) coloured by iteration or pattern.

Select points (click, box or lasso) or pick clusters under the chart to list their failures; every slice
(selection, cluster, pattern) can be downloaded as JSONL.
"""

from __future__ import annotations

import textwrap

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from pada.dashboard import frames, slices
from pages import common

JSONL_MIME = "application/x-ndjson"
COLOURS = {"iteration": "Iteration", "pattern": "Pattern"}


@st.cache_data(max_entries=16, show_spinner="Fitting one 2-D map over the chosen iterations…")
def across_map(path: str, version: int, iterations: tuple[int, ...]):
    """The cross-iteration map (one UMAP/PCA fit: seconds), cached until the run's data changes."""
    return slices.cross_iteration_map(common.open_store(path), list(iterations))


@st.cache_data(max_entries=64, show_spinner=False)
def slice_jsonl(path: str, version: int, keys: tuple[slices.Key, ...]) -> str:
    return slices.to_jsonl(slices.slice_records(common.open_store(path), keys))


def download(store, keys: list[slices.Key], what: str, key: str, label: str | None = None) -> None:
    """A download button for the slice `keys` as JSONL (disabled when the slice is empty)."""
    data = slice_jsonl(str(store.path), store.data_version(), tuple(keys)) if keys else ""
    st.download_button(label or f"Download {len(keys)} as JSONL", data, key=key, mime=JSONL_MIME,
                       file_name=slices.slice_file_name(store.run_id, {it for it, _ in keys}, what),
                       disabled=not keys, on_click="ignore", icon=":material/download:")


def map_chart(points, colour: str, order: list[str], key: str, symbol: str | None = None,
              axis: str = "UMAP") -> list[slices.Key]:
    """A scatter of `points` (x, y, iteration, failure_id, label, error_cause, scenario) coloured by `colour`;
    returns the (iteration, failure id) keys of the points selected on it."""
    shown = points.assign(error_cause=points["error_cause"].map(lambda t: "<br>".join(textwrap.wrap(t, 70)[:6])))
    fig = px.scatter(shown, x="x", y="y", color=colour, symbol=symbol, category_orders={colour: order},
                     color_discrete_sequence=common.PALETTE,
                     custom_data=["iteration", "failure_id", "label", "error_cause", "scenario"])
    fig.update_traces(
        marker={"size": 9, "opacity": 0.85},
        hovertemplate="<b>%{customdata[1]}</b> · %{customdata[2]}<br>%{customdata[3]}"
                      "<br><i>Scenario: %{customdata[4]}</i><extra></extra>",
    )
    common.style(fig, height=500).update_layout(xaxis_title=f"{axis} 1", yaxis_title=f"{axis} 2", dragmode="lasso")
    event = st.plotly_chart(fig, key=key, on_select="rerun", selection_mode=("points", "box", "lasso"))
    return slices.selection_keys(event.selection.points if event else [])


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


def members(store, picked, key: str, hint: str) -> None:
    """The picked failures as a table, with a download of them as JSONL."""
    if picked.empty:
        st.caption(hint)
        return
    head, button = st.columns([3, 1], vertical_alignment="center")
    head.markdown(f"**{len(picked)} selected failures**")
    with button:
        download(store, slices.keys_of(picked), "selection", key=f"{key}-download")
    page, size = common.paged(len(picked), f"{key}-page-{len(picked)}")
    st.dataframe(frames.page_slice(picked, page, size)[["iteration", "failure_id", "cluster", "pattern",
                                                       "error_cause", "scenario"]],
                 hide_index=True,
                 column_config={"error_cause": st.column_config.TextColumn("Error cause", width="large")})


# ------------------------------------------------------------ one iteration


def iteration_view(store, iterations: list[int]) -> None:
    iteration = common.iteration_picker(iterations, "clusters-iteration")
    clustering = common.q(store, "clustering", iteration)
    points = common.q(store, "cluster_frame", iteration)
    st.caption(f"{len(points)} analysed validation failures in {clustering.k} clusters · "
               f"embedder {clustering.embedder or 'unknown'}")
    labels = [frames.cluster_label(c, n) for c, n in zip(points["cluster"], points["category"], strict=False)]
    points = points.assign(iteration=iteration, label=labels, pattern=points["category"])
    map_col, side_col = st.columns([3, 2])
    with map_col:
        order = points.sort_values("cluster")["label"].unique().tolist()
        selected = map_chart(points, "label", order, key=f"scatter-{iteration}")
        clusters = st.pills("List the failures of clusters", order, selection_mode="multi",
                            key=f"clusters-pick-{iteration}") or []
    with side_col:
        st.markdown("**Elbow curve**")
        elbow(clustering)
        st.markdown("**Cluster sizes**")
        sizes(store, iteration)
    picked = points[points["failure_id"].isin([f for _, f in selected]) | points["label"].isin(clusters)]
    members(store, picked, f"clusters-{iteration}",
            "Select points on the map (click, box or lasso) or pick clusters above to list their failures.")


# ------------------------------------------------------- across iterations


def across_view(store, iterations: list[int]) -> None:
    """One map over the failures of several iterations, and downloads of its slices."""
    # The last two by default: one UMAP fit over ten iterations' failures takes ~10 s (over two, under 1 s).
    chosen = st.multiselect("Iterations on the map", iterations, default=iterations[-2:], key="across-iterations",
                            help="Add iterations to compare more of them; a fit over many takes some seconds.")
    colour = st.segmented_control("Colour by", list(COLOURS), format_func=COLOURS.get, default="iteration",
                                  key="across-colour") or "iteration"
    if not chosen:
        st.info("Pick at least one iteration.")
        return
    try:
        points = across_map(str(store.path), store.data_version(), tuple(sorted(chosen)))
    except ValueError as err:
        st.warning(str(err))
        return
    if points.empty:
        st.info("No map across iterations: none of the chosen iterations has its analysis embeddings stored "
                "(runs made before this version of PaDA Studio did not keep them). Each iteration's own map is "
                "below; a run made by this version gets the map across iterations.", icon=":material/info:")
        iteration_view(store, iterations)
        return
    shown = sorted(set(points["iteration"]))
    left_out = [it for it in sorted(chosen) if it not in shown]
    st.caption(f"{len(points)} analysed validation failures of iteration{'s' if len(shown) > 1 else ''} "
               f"{', '.join(map(str, shown))} in one 2-D fit"
               + (f" · iteration {', '.join(map(str, left_out))} has no stored embeddings (clustered by an "
                  "earlier version)" if left_out else ""))
    points = points.assign(
        group=slices.pattern_groups(points), it_label=points["iteration"].map(lambda it: f"Iteration {it}"),
        label=[f"iteration {it} · {frames.cluster_label(c, n)}"
               for it, c, n in zip(points["iteration"], points["cluster"], points["pattern"], strict=True)])
    if colour == "iteration":
        order = [f"Iteration {it}" for it in shown]
        selected = map_chart(points, "it_label", order, key=f"across-{'-'.join(map(str, shown))}-it",
                             axis=_axis(store))
    else:
        order = sorted(points["group"].unique())
        selected = map_chart(points, "group", order, symbol="it_label", key=f"across-{'-'.join(map(str, shown))}-pat",
                             axis=_axis(store))
    slice_downloads(store, points)
    wanted = set(selected)
    picked = points[[key in wanted for key in slices.keys_of(points)]]
    members(store, picked, "across", "Select points on the map (click, box or lasso) to list and download them.")


def _axis(store) -> str:
    return "PCA" if slices.run_clustering_config(store).projection == "pca" else "UMAP"


def slice_downloads(store, points) -> None:
    """Download one cluster (of one iteration) or one pattern (followed across the chosen iterations)."""
    cluster_col, pattern_col = st.columns(2)
    with cluster_col:
        clusters = points.drop_duplicates(["iteration", "cluster"]).sort_values(["iteration", "cluster"])
        options = list(zip(clusters["iteration"], clusters["cluster"], strict=True))
        labels = dict(zip(options, clusters["label"], strict=True))
        it, cluster = st.selectbox("A cluster", options, format_func=labels.get, key="across-cluster")
        members_of = points[(points["iteration"] == it) & (points["cluster"] == cluster)]
        download(store, slices.keys_of(members_of), f"cluster-{cluster}", key="across-cluster-download")
    with pattern_col:
        group = st.selectbox("A pattern (all its iterations)", sorted(points["group"].unique()), key="across-pattern")
        download(store, slices.keys_of(points[points["group"] == group]), f"pattern-{group}",
                 key="across-pattern-download")


def main() -> None:
    store = common.run_page("Clusters")
    iterations = [it for it in common.q(store, "analysed_iterations") if common.q(store, "clustering", it)]
    if not iterations:
        common.not_yet(store, "clusters of analysed failures")
        return
    if st.toggle("Map across iterations", key="clusters-across",
                 help="One 2-D map of the failures of several iterations (one fit over all of them), to see "
                      "a pattern empty out from one iteration to the next."):
        across_view(store, iterations)
    else:
        iteration_view(store, iterations)


main()
