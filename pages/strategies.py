"""Patterns & strategies: each cluster's error pattern and its augmentation strategy, editable and versioned.

Saving an edit stores a new version (the generator uses the latest); any older
version can be made current again. A person can also add a strategy of their
own, which no cluster produced: it gets its share of the budget like the others
and is marked hand-written. When the run is paused for this review, "Continue
run" resumes it with the edited strategies.
"""

from __future__ import annotations

import streamlit as st

from pada.dashboard import frames
from pada.store import StoreError
from pages import common


def pattern_block(pattern) -> None:
    st.markdown(f"**Error pattern.** {pattern.error_pattern}")
    if pattern.representative_samples:
        st.caption("Representative failures: " + ", ".join(pattern.representative_samples[:8]))
    if not pattern.ok:
        st.caption(":orange[The LLM's pattern call failed; this pattern was built without it.]")


def strategy_form(store, iteration: int, strategy, version: int, locked: bool) -> None:
    """All fields editable until generation has used them; widget keys carry the version, so a save or
    revert shows the new current values."""
    key = f"{iteration}-{strategy.cluster_id}-v{version}"
    with st.form(f"strategy-{key}"):
        c1, c2 = st.columns(2)
        name = c1.text_input("Strategy name", strategy.strategy_name, key=f"name-{key}", disabled=locked)
        category = c2.text_input("Category name", strategy.category_name, key=f"category-{key}", disabled=locked)
        approach = st.text_area("Generation approach", strategy.generation_approach, height=110,
                                key=f"approach-{key}", disabled=locked)
        elements = st.text_area("Key elements (one per line)", "\n".join(strategy.key_elements), height=100,
                                key=f"elements-{key}", disabled=locked)
        saved = st.form_submit_button("Save as new version", icon=":material/save:", disabled=locked)
    if not strategy.ok:
        st.caption(":orange[The LLM's strategy call failed; this is a generic fallback: worth editing.]")
    if saved:
        try:
            proposed = frames.edited_strategy(strategy, name, approach, elements, category)
        except ValueError as err:
            st.error(f"Not saved: {err}")
            return
        if not frames.strategy_changed(strategy, proposed):
            st.info("Nothing changed: no new version saved.")
            return
        new_version = store.save_strategy_edit(iteration, strategy.cluster_id, proposed, common.author())
        st.toast(f"Saved {proposed.strategy_name!r} as version {new_version}")
        st.rerun()


def history_block(store, iteration: int, cluster_id: int, history, locked: bool) -> None:
    with st.expander(f"History ({len(history)} version{'s' if len(history) != 1 else ''})"):
        st.dataframe(frames.history_frame(history), hide_index=True)
        older = [v.version for v in history[:-1]]
        if not older:
            st.caption(f"Only the {history[0].source} version so far.")
            return
        c1, c2 = st.columns([1, 2])
        version = c1.selectbox("Version", list(reversed(older)), key=f"revert-pick-{iteration}-{cluster_id}",
                               format_func=lambda v: f"v{v}")
        c2.write("")
        if c2.button(f"Revert to v{version}", key=f"revert-{iteration}-{cluster_id}", icon=":material/undo:",
                     disabled=locked):
            new_version = store.revert_strategy(iteration, cluster_id, version, common.author())
            st.toast(f"Version {version} is current again (as version {new_version})")
            st.rerun()


def add_form(store, iteration: int, refused: str | None) -> None:
    """A strategy of the person's own; widget keys carry a count of those added, so a new form is empty."""
    st.subheader("Add a strategy of your own")
    st.caption("For a weakness no cluster found (e.g. the model fails on negations). It gets the same share of "
               f"the pattern budget as each drafted strategy, and is marked {frames.HAND_WRITTEN} everywhere.")
    if refused:
        st.caption(f":material/lock: Not now: {refused}.")
    count_key = f"written-count-{iteration}"
    key = f"{iteration}-{st.session_state.get(count_key, 0)}"
    with st.form(f"written-{key}"):
        c1, c2 = st.columns(2)
        name = c1.text_input("Strategy name", key=f"written-name-{key}", disabled=bool(refused))
        category = c2.text_input("What the model fails on", key=f"written-category-{key}", disabled=bool(refused),
                                 placeholder="e.g. questions with negations",
                                 help="The generator is told the model often fails in this kind of situation. "
                                      "Empty: the strategy's name.")
        approach = st.text_area("Generation approach", height=110, key=f"written-approach-{key}",
                                disabled=bool(refused))
        elements = st.text_area("Key elements (one per line)", height=100, key=f"written-elements-{key}",
                                disabled=bool(refused))
        added = st.form_submit_button("Add strategy", icon=":material/add:", disabled=bool(refused))
    if added:
        try:
            strategy = frames.written_strategy(name, approach, elements, category)
            cluster_id = store.add_written_strategy(iteration, strategy, common.author())
        except (ValueError, StoreError) as err:
            st.error(f"Not added: {err}")
            return
        st.session_state[count_key] = st.session_state.get(count_key, 0) + 1
        st.toast(f"Added {strategy.strategy_name!r} as strategy {cluster_id}")
        st.rerun()


def main() -> None:
    store = common.run_page("Patterns & strategies", continue_key="continue-strategies")
    iterations = common.q(store, "strategy_iterations")
    if not iterations:
        common.not_yet(store, "error patterns or strategies")
        return
    with_strategies = [it for it in iterations if common.q(store, "current_strategies", it)]
    iteration = common.iteration_picker(iterations, "strategies-iteration",
                                        default=with_strategies[-1] if with_strategies else None)
    patterns = {p.cluster_id: p for p in common.q(store, "patterns", iteration)}
    strategies = {s.cluster_id: s for s in common.q(store, "current_strategies", iteration)}
    sizes = common.q(store, "cluster_sizes", iteration)
    if not strategies:
        st.info(f"Iteration {iteration} has patterns but no strategies: the last iteration is only analysed, "
                "to show which errors remain.")
    locked = common.q(store, "strategies_locked", iteration)
    if locked and strategies:
        st.info(f"Read-only: {locked}.", icon=":material/lock:")
    for cluster_id in sorted(set(patterns) | set(strategies)):
        pattern, strategy = patterns.get(cluster_id), strategies.get(cluster_id)
        title = (pattern.category_name if pattern else strategy.category_name) or f"Cluster {cluster_id}"
        with st.container(border=True):
            st.subheader(f"{cluster_id} · {title}")
            if strategy and strategy.hand_written:
                st.markdown(f":violet-badge[{frames.HAND_WRITTEN}] written by a person; no cluster produced it")
            else:
                n_failures = sizes.get(cluster_id, 0)
                st.caption(f"{n_failures} failure{'s' if n_failures != 1 else ''} in this cluster")
            if pattern:
                pattern_block(pattern)
            if strategy:
                history = common.q(store, "strategy_history", iteration, cluster_id)
                version = history[-1].version if history else 1
                st.markdown(f"**Strategy** · version {version}"
                            + (f" · {history[-1].source} by {history[-1].author}" if history else ""))
                strategy_form(store, iteration, strategy, version, bool(locked))
                history_block(store, iteration, cluster_id, history, bool(locked))
    add_form(store, iteration, common.q(store, "adding_strategies_refused", iteration))


main()
