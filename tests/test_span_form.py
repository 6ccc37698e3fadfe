"""SQuAD's span form: the generator writes a question and its answer; the code keeps the context.

Driven on real SQuAD training examples through the real LLMClient and the scripted generation stand-in
(tests/doubles/scripted_generation.py, canned replies, not a model)."""

import json

import pytest
from pydantic import ValidationError

from conftest import scripted_client
from doubles.scripted_generation import generation_script
from pada.agents.budget import plan_budget
from pada.agents.generation import (
    GenerationConfig,
    generate_and_qc,
    generate_error_samples,
    generate_pattern_samples,
    generate_rephrase_samples,
)
from pada.records import Failure, Strategy
from pada.tasks import get_task
from pada.tasks.forms import SPAN_FORM, SpanItem, span_parts, span_prompt

STRATEGY = Strategy(cluster_id=0, category_name="dates", strategy_name="Ask for dates",
                    generation_approach="Questions whose answer is a date or a number in the paragraph")


@pytest.fixture(scope="module")
def squad():
    task = get_task("squad")
    return task, task.splits(train_size=6, val_size=2, test_size=2).train


def context_of(prompt: str) -> str:
    return span_parts(prompt)[0]


def test_squad_uses_the_span_form(squad):
    task, _ = squad
    assert task.sample_form is SPAN_FORM


def test_the_layout_is_the_tasks_own_and_the_context_verbatim(squad):
    task, examples = squad
    for example in examples:
        context, question = span_parts(example.prompt)
        # the example's own question and answer come back as exactly the task's prompt and reply
        assert SPAN_FORM.build(SpanItem(question=question, answer=example.answer), example.prompt) == \
            (example.prompt, example.answer)
        # a generator that writes the context, the label or the instruction anyway: the code's layout stands
        item = SpanItem(question=f"{example.prompt}", answer=example.answer)
        assert SPAN_FORM.build(item, example.prompt)[0] == example.prompt
        item = SpanItem(question="Question: What is this about?", answer=example.answer)
        prompt, _ = SPAN_FORM.build(item, example.prompt)
        assert prompt == span_prompt(context, "What is this about?") and context_of(prompt) == context
        assert task.format_problem(prompt, example.answer) is None


def test_an_answer_that_is_not_a_span_is_invalid(squad):
    _, examples = squad
    example = examples[0]
    context = context_of(example.prompt)
    words = context.split()
    span = " ".join(words[3:6])
    assert SPAN_FORM.problem(SpanItem(question="q?", answer=span), example.prompt) is None
    spaced = "  \n".join(words[3:6])  # whitespace runs match any whitespace
    assert SPAN_FORM.problem(SpanItem(question="q?", answer=spaced), example.prompt) is None
    assert SPAN_FORM.build(SpanItem(question="q?", answer=spaced), example.prompt)[1] == span
    flipped = span.swapcase()  # SQuAD answers are exact substrings: case counts
    assert "not a verbatim span" in SPAN_FORM.problem(SpanItem(question="q?", answer=flipped), example.prompt)
    assert "not a verbatim span" in SPAN_FORM.problem(SpanItem(question="q?", answer="zebra quantum"),
                                                      example.prompt)
    assert "short span" in SPAN_FORM.problem(SpanItem(question="q?", answer=" ".join(words[:40])), example.prompt)
    with pytest.raises(ValueError, match="not a verbatim span"):
        SPAN_FORM.build(SpanItem(question="q?", answer="zebra quantum"), example.prompt)
    with pytest.raises(ValidationError):
        SpanItem(question="q?", answer="")


def test_near_copies_are_judged_on_the_question_under_the_same_context(squad):
    """A new question on the example's paragraph shares most of its prompt's words with the example (the
    context is kept by design): only the question counts, and only against prompts on the same context."""
    from pada.agents.quality import unfit_samples
    from pada.records import SyntheticSample

    task, examples = squad
    example = examples[0]
    other = next(e for e in examples[1:] if context_of(e.prompt) != context_of(example.prompt))
    context, question = span_parts(example.prompt)

    def sample(sample_id, prompt):  # answered by the first two words of the prompt's own paragraph
        return SyntheticSample(sample_id=sample_id, branch="pattern", based_on_example=example.id,
                               messages=[{"role": "user", "content": prompt},
                                         {"role": "assistant", "content": " ".join(context_of(prompt).split()[:2])}])

    samples = [sample("new", span_prompt(context, "Which two words open this paragraph?")),
               sample("reworded", span_prompt(context, question.rstrip("?") + " then?")),  # one word added
               sample("same", span_prompt(context, question)),
               sample("elsewhere", span_prompt(context_of(other.prompt), question))]  # same words, other paragraph
    assert unfit_samples(task, examples, samples, max_similarity=0.75) == {
        "the question is a near copy of a training question or another sample": ["reworded"],
        "the question repeats a training question or another sample": ["same"]}


def test_the_judge_reads_a_shared_context_once(squad):
    from pada.agents.quality import SAME_CONTEXT, QCBatch, judge_messages
    from pada.records import SyntheticSample

    task, examples = squad
    original = examples[0]
    other = next(e for e in examples[1:] if context_of(e.prompt) != context_of(original.prompt))
    context = context_of(original.prompt)

    def sample(prompt):
        return SyntheticSample(sample_id=str(len(prompt)), branch="error", based_on_example=original.id,
                               messages=[{"role": "user", "content": prompt}, {"role": "assistant", "content": "x"}])

    same = sample(span_prompt(context, "Which words open the paragraph?"))
    elsewhere = sample(other.prompt)
    text = judge_messages(QCBatch(original, form=task.sample_form), [same, elsewhere])[-1]["content"]
    assert text.count(context) == 1  # the original's, once
    assert f"{SAME_CONTEXT}\nQuestion: Which words open the paragraph?" in text
    assert context_of(other.prompt) in text  # a sample on another paragraph is shown whole
    # without the form (free-form tasks) every sample is shown as it is
    assert judge_messages(QCBatch(original), [same])[-1]["content"].count(context) == 2


def test_generated_non_spans_are_dropped_not_repaired(stand_in, squad):
    _, examples = squad
    example = examples[0]
    span = " ".join(context_of(example.prompt).split()[2:4])
    reply = json.dumps({"variants": [{"question": "Which words come third?", "answer": span},
                                     {"question": "What is not there?", "answer": "zebra quantum"}]})
    stand_in.set_script({**generation_script(), "GeneratedVariants": reply})
    samples = generate_pattern_samples([STRATEGY], [2], [example], scripted_client("span"),
                                       GenerationConfig(batch_size=2), form=SPAN_FORM)
    assert [s.messages[1]["content"] for s in samples] == [span]
    assert samples[0].question == span_prompt(context_of(example.prompt), "Which words come third?")
    # a salvaged reply (wrong item count) is held to the same check
    stand_in.set_script({**generation_script(), "GeneratedVariants": json.dumps(
        {"variants": [{"question": "What is not there?", "answer": "zebra quantum"}]})})
    assert generate_pattern_samples([STRATEGY], [2], [example], scripted_client("span", schema_retries=0),
                                    GenerationConfig(batch_size=2), form=SPAN_FORM) == []


def test_pattern_and_error_branches_ask_for_a_question_and_span_of_the_same_context(stand_in, squad):
    task, examples = squad
    samples = generate_pattern_samples([STRATEGY], [4], examples, scripted_client("span"),
                                       GenerationConfig(batch_size=2), form=SPAN_FORM)
    failure = Failure(id=examples[1].id, split="train", input=examples[1].prompt,
                      ground_truth=examples[1].answer, prediction="I do not know.")
    errors = generate_error_samples([failure], 2, examples, scripted_client("span"), GenerationConfig(batch_size=2),
                                    form=SPAN_FORM)
    assert len(samples) == 4 and len(errors) == 2
    by_id = {ex.id: ex for ex in examples}
    for sample in samples + errors:
        original = by_id[sample.based_on_example]
        assert context_of(sample.question) == context_of(original.prompt)  # verbatim, never retyped
        assert task.format_problem(sample.question, sample.answer) is None
    assert {s.based_on_example for s in errors} == {examples[1].id}
    sent = [r for r in stand_in.received if r["schema_name"] == "GeneratedVariants"]
    assert sent and all("SpanItem" in json.dumps(r["schema"]) for r in sent)
    prompts = [r["messages"][-1]["content"] for r in sent]
    assert all("Keep the same context paragraph" in p and "Change the content" not in p
               and "Use new content" not in p for p in prompts)
    assert any("### The model's wrong reply\nI do not know." in p for p in prompts)


def test_rephrasing_rewrites_the_question_under_the_same_context(stand_in, squad):
    _, examples = squad
    samples = generate_rephrase_samples(examples, 4, scripted_client("span"), GenerationConfig(batch_size=2),
                                        form=SPAN_FORM)
    by_id = {ex.id: ex for ex in examples}
    assert len(samples) == 4
    for sample in samples:
        original = by_id[sample.based_on_example]
        context, question = span_parts(sample.question)
        assert context == context_of(original.prompt) and question != span_parts(original.prompt)[1]
        assert sample.answer == original.answer and sample.question.count("Context: ") == 1
    texts = [r["messages"][-1]["content"].split("### End of question")[0]
             for r in stand_in.received if r["schema_name"] == "Rephrasings"]
    assert texts and all("Context:" not in text for text in texts)  # only the question is to be rephrased


def test_generate_and_qc_end_to_end_keeps_every_sample_a_span_of_its_context(stand_in, squad):
    task, examples = squad
    failures = [Failure(id=examples[2].id, split="train", input=examples[2].prompt,
                        ground_truth=examples[2].answer, prediction="no idea")]
    outcome = generate_and_qc([STRATEGY], plan_budget(12, 1, 1), examples, failures, scripted_client("gen"),
                              scripted_client("judge"), GenerationConfig(batch_size=2), form=SPAN_FORM)
    assert outcome.accepted and {s.branch for s in outcome.attempts} == {"pattern", "error"}
    by_id = {ex.id: ex for ex in examples}
    for sample in outcome.attempts:
        assert context_of(sample.question) == context_of(by_id[sample.based_on_example].prompt)
        assert task.format_problem(sample.question, sample.answer) is None


def test_pattern_and_strategy_writers_are_told_a_span_sample_keeps_its_paragraph(tmp_path, tiny_slm_dir):
    from conftest import tiny_run_config
    from pada.agents.strategies import StrategyConfig, strategy_messages
    from pada.config import from_dict
    from pada.pipeline import Pipeline
    from pada.records import Pattern
    from pada.store import RunStore

    def description(**overrides) -> tuple[str, str]:
        config = from_dict(tiny_run_config(tiny_slm_dir, **overrides))
        store = RunStore.create(config.to_dict(), runs_root=tmp_path)
        try:
            pipeline = Pipeline(store, config)
            return pipeline.task_description, pipeline.design_description
        finally:
            store.close()

    task, design = description(task="squad")
    assert task == "SQuAD v1.1" and design == f"SQuAD v1.1. {SPAN_FORM.strategy_scope}"
    pattern = Pattern(cluster_id=0, category_name="Dates", error_pattern="Misses dates.", representative_samples=[])
    prompt = json.dumps(strategy_messages(pattern, [pattern], [], StrategyConfig(), design))
    assert "never a topic" in prompt  # what the strategy writer reads
    assert description(task="squad", generation={"structured": False})[1] == "SQuAD v1.1"  # free form: no scope
    assert description()[1] == description()[0]  # ARC's choice form keeps nothing of its example
