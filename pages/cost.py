"""Cost: LLM tokens, cost, latency and cache hits per stage and model (and per iteration)."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from pages import common

NUMBER_COLUMNS = {
    "calls": st.column_config.NumberColumn("Calls", format="%d"),
    "cache_hits": st.column_config.NumberColumn("Cache hits", format="%d"),
    "failures": st.column_config.NumberColumn("Failed", format="%d"),
    "prompt_tokens": st.column_config.NumberColumn("Prompt tokens", format="%d"),
    "completion_tokens": st.column_config.NumberColumn("Completion tokens", format="%d"),
    "tokens": st.column_config.NumberColumn("Tokens", format="%d"),
    "cost_usd": st.column_config.NumberColumn("Cost ($)", format="%.4f"),
    "latency_s": st.column_config.NumberColumn("Latency total (s)", format="%.1f"),
    "mean_latency_s": st.column_config.NumberColumn("Latency mean (s)", format="%.2f"),
    "cache_hit_rate": st.column_config.NumberColumn("Cache-hit rate", format="percent"),
}


def totals(frame) -> None:
    calls = int(frame["calls"].sum())
    cols = st.columns(5)
    cols[0].metric("LLM calls", f"{calls:,}")
    cols[1].metric("Tokens", f"{int(frame['tokens'].sum()):,}")
    cols[2].metric("Cost", f"${frame['cost_usd'].sum():.4f}")
    cols[3].metric("Cache hits", f"{frame['cache_hits'].sum() / calls:.0%}" if calls else "–")
    cols[4].metric("Mean latency", f"{frame['latency_s'].sum() / calls:.2f} s" if calls else "–")
    failed = int(frame["failures"].sum())
    if failed:
        st.warning(f"{failed} call{'s' if failed != 1 else ''} failed after retries; their stages kept the raw "
                   "replies and fell back (see Patterns & strategies).")


def charts(frame) -> None:
    """Tokens per stage, and cost per stage (or mean latency when every call was free)."""
    left, right = st.columns(2)
    with left:
        fig = px.bar(frame, x="stage", y="tokens", color="model", barmode="stack", title="Tokens per stage",
                     color_discrete_sequence=common.PALETTE)
        st.plotly_chart(common.style(fig), key="tokens-chart")
    with right:
        if frame["cost_usd"].sum() > 0:
            fig = px.bar(frame, x="stage", y="cost_usd", color="model", barmode="stack", title="Cost per stage ($)",
                         color_discrete_sequence=common.PALETTE)
        else:
            fig = px.bar(frame, x="stage", y="mean_latency_s", color="model", barmode="group",
                         title="Mean latency per call (s) · every call was free",
                         color_discrete_sequence=common.PALETTE)
        st.plotly_chart(common.style(fig), key="cost-chart")


def main() -> None:
    store = common.run_page("Cost")
    frame = common.q(store, "usage_frame", ("stage", "model"))
    if frame.empty:
        common.not_yet(store, "LLM calls")
        return
    totals(frame)
    charts(frame)
    st.subheader("Per stage and model")
    st.dataframe(frame, hide_index=True, column_config=NUMBER_COLUMNS, key="usage-stage-model")
    per_iteration = common.q(store, "usage_frame", ("iteration", "stage"))
    st.subheader("Per iteration and stage")
    st.dataframe(per_iteration, hide_index=True, column_config=NUMBER_COLUMNS, key="usage-iteration")
    st.caption("Cached calls cost nothing and add no latency; local models report $0.")


main()
