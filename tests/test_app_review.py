"""The review pages for issue 13 §4-5, driven with AppTest on copies of the pipeline's run: a strategy of
one's own added through the strategies page, and synthetic review in pairs (each sample beside the
training example it was based on, with every QC attempt in order)."""

from __future__ import annotations

from test_app import app, no_errors, open_page, runs  # noqa: F401  (runs: the fixture, a private run copy)
from test_written_strategy import NEGATIONS, generate, rewind_to_generation

from pada.dashboard import frames
from pada.records import QCResult
from pada.store import RunStore


def fill_written_form(at, name: str, approach: str, elements: str = "", category: str = "") -> None:
    for kind, field, value in (("text_input", "name", name), ("text_input", "category", category),
                               ("text_area", "approach", approach), ("text_area", "elements", elements)):
        getattr(at, kind)(key=f"written-{field}-1-0").input(value)
    [b for b in at.button if b.label == "Add strategy"][0].click().run()


def test_a_strategy_added_through_the_form_is_stored_hand_written_and_shown_so(runs):
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root)
    store.forget_stage(1, "generate")  # as if paused for review after drafting
    n_drafted = len(store.current_strategies(1))
    at = open_page(app(), "strategies")
    at.text_input(key="author").input("ana").run()
    fill_written_form(at, "Negation drill", "Make the answer hinge on a 'not'.", "- a negated stem\n- flips",
                      "negations")
    no_errors(at, "strategies")

    current = store.current_strategies(1)
    assert len(current) == n_drafted + 1
    written = current[-1]
    assert (written.strategy_name, written.category_name, written.key_elements, written.hand_written) == (
        "Negation drill", "negations", ["a negated stem", "flips"], True)
    assert [(v.version, v.source, v.author) for v in store.strategy_history(1, written.cluster_id)] == [
        (1, "written", "ana")]
    assert any(frames.HAND_WRITTEN in m.value for m in at.markdown)  # its block carries the mark
    assert at.text_input(key=f"name-1-{written.cluster_id}-v1").value == "Negation drill"  # editable like others
    assert at.text_input(key="written-name-1-1").value == ""  # a fresh, empty form for the next one


def test_a_strategy_without_an_approach_is_not_added(runs):
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root)
    store.forget_stage(1, "generate")
    before = store.current_strategies(1)
    at = open_page(app(), "strategies")
    fill_written_form(at, "Negation drill", "   ")
    assert not at.exception
    assert any("Not added" in e.value and "generation approach" in e.value for e in at.error)
    assert store.current_strategies(1) == before


def test_the_form_is_read_only_with_the_reason_once_generation_used_the_strategies(runs):
    at = open_page(app(), "strategies")  # the finished run generated from iteration 1's strategies
    assert at.text_input(key="written-name-1-0").disabled
    assert [b for b in at.button if b.label == "Add strategy"][0].disabled
    assert any("Not now" in c.value and "already generated" in c.value for c in at.caption)


def test_samples_of_a_hand_written_strategy_are_marked_and_shown_beside_their_original(runs):
    root, run_id = runs
    store = rewind_to_generation(RunStore.open(run_id, runs_root=root))
    store.add_written_strategy(1, NEGATIONS, author="ana")
    generate(store)
    label = frames.strategy_label("Negation drill", True)
    sample = store.samples(1, strategy="Negation drill", limit=1)[0]

    at = open_page(app(), "samples")
    assert label in at.selectbox(key="samples-strategy").options
    at.selectbox(key="samples-strategy").set_value("Negation drill").run()
    no_errors(at, "samples")
    assert set(at.dataframe[0].value["strategy"]) == {label}
    at.selectbox(key="samples-one").set_value(sample.sample.sample_id).run()
    assert any(f"strategy {label}" in c.value for c in at.caption)
    original = frames.originals(store, 1)[sample.sample.based_on_example]
    texts = [t.value for t in at.text]
    assert original["question"] in texts and original["answer"] in texts
    assert sample.sample.question in texts
    attempts = at.dataframe[1].value
    assert attempts["attempt"].tolist() == list(range(1, sample.n_attempts + 1))
    assert attempts["average"].iloc[-1] == sample.score

    at = open_page(at, "strategies")
    assert any(frames.HAND_WRITTEN in m.value for m in at.markdown)


def test_every_attempt_is_listed_in_order_with_its_scores_and_what_regeneration_changed(runs):
    root, run_id = runs
    store = RunStore.open(run_id, runs_root=root)
    first = store.samples(1, limit=1)[0]
    question = first.sample.question
    again = first.sample.model_copy(update={"attempt": first.n_attempts + 1, "messages": [
        {"role": "user", "content": question + "\nREGENERATED LINE"},
        {"role": "assistant", "content": first.sample.answer}]})
    verdict = QCResult(sample_id=again.sample_id, attempt=again.attempt, utility=9, relevance=8, average=8.5,
                       feedback="fixed now", passed=True)
    store.save_samples(1, [again], [verdict], replace=False)
    history = store.sample_history(1, first.sample.sample_id)

    at = open_page(app(), "samples")
    at.selectbox(key="samples-one").set_value(first.sample.sample_id).run()
    no_errors(at, "samples")
    attempts = at.dataframe[1].value
    assert attempts["attempt"].tolist() == [a.sample.attempt for a in history]
    assert attempts["feedback"].tolist() == [a.qc.feedback if a.qc else "" for a in history]
    last = attempts.iloc[-1]
    assert (last["utility"], last["relevance"], last["average"], bool(last["passed"])) == (9, 8, 8.5, True)
    assert last["question"] == question + "\nREGENERATED LINE"
    assert any("+REGENERATED LINE" in c.value for c in at.code)  # the diff of the last regeneration
