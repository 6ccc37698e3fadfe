"""Synthetic review: samples with the judge's scores and feedback next to their originals; accept or reject.

Review in pairs: the selected sample beside the training example it was based on (the pair the judge
scored), with every attempt's scores, feedback and text in order, so a reviewer sees what regeneration
changed. Samples of a hand-written strategy are marked as such.

A person's decision (accepted_human / rejected_human) overrides the judge's
and decides what enters training when the run continues.
"""

from __future__ import annotations

import streamlit as st

from pada.dashboard import frames
from pada.store import LEAKED_STATUS, SAMPLE_STATUSES
from pages import common

BRANCHES = ("pattern", "error", "rephrase")
ACCEPT, REJECT = "accepted_human", "rejected_human"


def filters(store, iteration: int, written: list[str]) -> dict:
    c1, c2, c3, c4 = st.columns([2, 1, 2, 2])
    strategy = c1.selectbox("Strategy", [None, *common.q(store, "sample_strategies", iteration)],
                            key="samples-strategy",
                            format_func=lambda s: "All" if s is None else frames.strategy_label(s, s in written))
    branch = c2.selectbox("Branch", [None, *BRANCHES], key="samples-branch",
                          format_func=lambda b: "All" if b is None else b)
    statuses = c3.multiselect("Status", SAMPLE_STATUSES, key="samples-status", placeholder="All")
    low, high = c4.slider("QC score", 0.0, 10.0, (0.0, 10.0), step=0.5, key="samples-score",
                          help="The judge's average score. The full range also keeps unjudged samples.")
    min_score, max_score = frames.score_bounds(low, high)
    return {"strategy": strategy, "branch": branch, "status": tuple(statuses) or None,
            "min_score": min_score, "max_score": max_score}


def decide(store, iteration: int, sample_ids: list[str], status: str) -> None:
    changed = store.set_sample_status(sample_ids, status, common.author(), iteration=iteration)
    verb = "Accepted" if status == ACCEPT else "Rejected"
    st.toast(f"{verb} {changed} sample{'s' if changed != 1 else ''}")
    st.rerun()


def table(frame) -> None:
    st.dataframe(
        frame.drop(columns=["iteration"]), hide_index=True,
        column_config={
            "sample_id": "Sample", "status": "Status",
            "score": st.column_config.ProgressColumn("QC score", min_value=0, max_value=10, format="%.1f"),
            "question": st.column_config.TextColumn("Question", width="large"),
            "feedback": st.column_config.TextColumn("Judge feedback", width="large"),
            "based_on": "Original", "attempts": st.column_config.NumberColumn("Attempts", format="%d"),
        },
    )


def bulk(store, iteration: int, frame, chosen: dict, total: int, locked: bool) -> None:
    """Decide on several samples of this page, or on every sample matching the filters."""
    ids = frame["sample_id"][frame["status"] != LEAKED_STATUS].tolist()  # the guard's drops are final
    picked = st.multiselect("Select samples on this page", ids, key=f"samples-bulk-{iteration}",
                            placeholder="pick samples to accept or reject together", disabled=locked)
    c1, c2, c3 = st.columns([1, 1, 3])
    if c1.button("Accept selected", disabled=locked or not picked, icon=":material/check:", key="bulk-accept"):
        decide(store, iteration, picked, ACCEPT)
    if c2.button("Reject selected", disabled=locked or not picked, icon=":material/close:", key="bulk-reject"):
        decide(store, iteration, picked, REJECT)
    with c3.popover(f"All {total} matching samples…", icon=":material/done_all:", disabled=locked):
        st.caption("Applies to every sample matching the filters, on every page, except those the leakage "
                   "guard dropped: they overlap a validation or test question and never enter training.")
        for status, label in ((ACCEPT, "Accept all"), (REJECT, "Reject all")):
            if st.button(f"{label} {total}", key=f"all-{status}"):
                matching = store.samples(iteration, **chosen, limit=None)
                decide(store, iteration, [s.sample.sample_id for s in matching], status)


def messages_block(messages: list[dict]) -> None:
    for message in messages:
        role = message.get("role", "")
        st.markdown(f"**{role.capitalize()}**")
        st.text(message.get("content", ""))


def review_one(store, iteration: int, page_samples: list, locked: bool, written: list[str]) -> None:
    """One sample beside the training example it was based on, every attempt's verdict; accept or reject it."""
    by_id = {s.sample.sample_id: s for s in page_samples}
    sample_id = st.selectbox("Review one sample", list(by_id), key="samples-one",
                             format_func=lambda i: f"{i} · score {by_id[i].score:.1f}" if by_id[i].score is not None
                             else f"{i} · not judged")
    stored = by_id[sample_id]
    scores = frames.qc_scores(stored)
    st.markdown(f"Status **{stored.status.replace('_', ' ')}**"
                + (f" (by {stored.status_author})" if stored.status_author else ""))
    cols = st.columns(4)
    for col, name in zip(cols, ("average", "adherence", "utility", "relevance"), strict=True):
        value = scores.get(name)
        col.metric(name.capitalize(), "–" if value is None else f"{value:.1f}" if name == "average" else value)
    if stored.qc and stored.qc.judge_answer is not None:
        verdict = "agrees" if stored.qc.answer_agrees else "does not agree: not accepted by QC"
        st.markdown(f"**Judge's own answer:** {stored.qc.judge_answer} (the sample's answer {verdict})")
    if stored.qc and stored.qc.feedback:
        st.markdown(f"**Judge feedback:** {stored.qc.feedback}")
    pair(store, iteration, stored, written)
    leaked = stored.status == LEAKED_STATUS
    if leaked:
        st.caption(":red[Dropped by the leakage guard: it overlaps a validation or test question. "
                   "This is final; no review decision can put it into training.]")
    c1, c2, _ = st.columns([1, 1, 4])
    if c1.button("Accept", key="one-accept", icon=":material/check:", type="primary", disabled=locked or leaked):
        decide(store, iteration, [sample_id], ACCEPT)
    if c2.button("Reject", key="one-reject", icon=":material/close:", disabled=locked or leaked):
        decide(store, iteration, [sample_id], REJECT)
    attempts(store, iteration, stored)


def pair(store, iteration: int, stored, written: list[str]) -> None:
    """The training example (left) and the sample written from it (right): what the judge compared."""
    sample = stored.sample
    left, right = st.columns(2)
    with left:
        st.markdown(f"##### Original · `{sample.based_on_example}`")
        original = common.q(store, "originals", iteration).get(sample.based_on_example)
        if original is None:
            st.caption("The original is not in this iteration's training set or training failures.")
        else:
            st.caption("The training example the sample was written from and judged against")
            messages_block([{"role": "user", "content": original["question"]},
                            {"role": "assistant", "content": original["answer"]}])
            if original["prediction"]:
                st.markdown("**The small model answered**")
                st.text(original["prediction"])
    with right:
        st.markdown(f"##### Synthetic · `{sample.sample_id}`")
        strategy = sample.based_on_strategy
        st.caption(f"branch {sample.branch}"
                   + (f" · strategy {frames.strategy_label(strategy, strategy in written)}" if strategy else "")
                   + f" · attempt {sample.attempt} of {stored.n_attempts}")
        messages_block(sample.messages)


def attempts(store, iteration: int, stored) -> None:
    """Every QC attempt in order (scores, feedback, text) and, after a regeneration, what it changed."""
    frame = common.q(store, "attempts_frame", iteration, stored.sample.sample_id)
    st.markdown(f"**QC attempts** ({len(frame)})")
    st.dataframe(frame, hide_index=True, column_config={
        "attempt": st.column_config.NumberColumn("Attempt", format="%d"),
        "average": st.column_config.NumberColumn("Average", format="%.1f"),
        "passed": st.column_config.CheckboxColumn("Passed"),
        "judge_answer": st.column_config.TextColumn("Judge's answer", width="medium"),
        "feedback": st.column_config.TextColumn("Judge feedback", width="large"),
        "question": st.column_config.TextColumn("Question", width="large"),
        "answer": st.column_config.TextColumn("Answer", width="medium"),
    })
    if len(frame) > 1:
        with st.expander("What each regeneration changed"):
            for i in range(1, len(frame)):
                diff = frames.attempt_diff(frame.iloc[i - 1], frame.iloc[i])
                st.code(diff or "(no change in the text)", language="diff")


def summary(store, iteration: int) -> None:
    counts = common.q(store, "sample_counts", iteration, group_by=("status",))
    by_status = {row["status"]: row["count"] for row in counts}
    cols = st.columns(len(SAMPLE_STATUSES))
    for col, status in zip(cols, SAMPLE_STATUSES, strict=True):
        col.metric(status.replace("_", " "), by_status.get(status, 0))
    judge_check(store, iteration)


def judge_check(store, iteration: int) -> None:
    """How the judge did on the samples planted into this iteration's QC (never listed below)."""
    from pada.agents.canaries import CanaryVerdict, judge_warning, summarise

    verdicts = [CanaryVerdict.model_validate(row) for row in common.q(store, "canaries", iteration)]
    if not verdicts:
        return
    check = summarise(verdicts)
    rate = lambda value: "–" if value is None else f"{100 * value:.0f}%"  # noqa: E731
    c1, c2, c3 = st.columns([1, 1, 3])
    c1.metric("Judge catch rate", rate(check["catch_rate"]),
              help="Planted bad samples (wrong answer, broken format, copy of the original, mismatched "
                   "answer) the judge rejected, of those it scored. They never enter training or the counts.")
    c2.metric("Controls accepted", rate(check["control_acceptance"]),
              help="Real training examples shown to the judge as samples that it accepted.")
    c3.caption(f"Judge check: rejected {check['rejected']} of {check['judged']} planted bad samples, accepted "
               f"{check['controls_accepted']} of {check['controls_judged']} training examples shown as samples.")
    warning = judge_warning(check)
    if warning:
        st.warning(warning[0].upper() + warning[1:], icon=":material/warning:")


def main() -> None:
    store = common.run_page("Synthetic review", continue_key="continue-samples")
    iterations = common.q(store, "sample_iterations")
    if not iterations:
        common.not_yet(store, "synthetic samples")
        return
    iteration = common.iteration_picker(iterations, "samples-iteration")
    summary(store, iteration)
    written = common.q(store, "written_strategy_names", iteration)
    chosen = filters(store, iteration, written)
    total = common.q(store, "sample_count", iteration, **chosen)
    if total == 0:
        st.info("No sample matches these filters.")
        return
    page, size = common.paged(total, f"samples-page-{iteration}-{sorted(chosen.items())}")
    page_samples = common.q(store, "samples", iteration, **chosen, limit=size, offset=(page - 1) * size)
    st.caption(f"{total} matching samples · page {page} of {frames.n_pages(total, size)}")
    frame = frames.samples_frame(page_samples, written)
    table(frame)
    locked = common.q(store, "decisions_locked", iteration)
    if locked:
        st.info(f"Read-only: {locked}.", icon=":material/lock:")
    bulk(store, iteration, frame, chosen, total, bool(locked))
    st.divider()
    review_one(store, iteration, page_samples, bool(locked), written)


main()
