"""Sample forms: generators fill a task's fields and the code writes the task's layout.

Driven on real ARC-Challenge / GSM8K training examples through the real LLMClient and the scripted
generation stand-in (tests/doubles/scripted_generation.py, canned replies, not a model)."""

import json

import pytest
from pydantic import ValidationError

from conftest import scripted_client
from pada.agents.generation import (
    GenerationConfig,
    generate_error_samples,
    generate_pattern_samples,
    generate_rephrase_samples,
    variants_schema,
)
from pada.records import Failure, Strategy
from pada.tasks import get_task
from pada.tasks.forms import CHOICE_FORM, FREE_FORM, NUMBER_FORM, SPAN_FORM, ChoiceItem, NumberItem, choice_stem

STRATEGY = Strategy(cluster_id=0, category_name="misread question", strategy_name="Careful reading",
                    generation_approach="Questions whose key word is easy to overlook")


def train(task: str, n: int = 6):
    return get_task(task).splits(train_size=n, val_size=2, test_size=2).train


def test_choice_item_becomes_the_tasks_own_layout():
    arc = get_task("arc_challenge")
    item = ChoiceItem(question="Which gas do plants take in?", options=["oxygen", "B. carbon dioxide", "helium"],
                      answer_letter="B")
    prompt, answer = CHOICE_FORM.turns(item)
    assert prompt == ("Which gas do plants take in?\n\nA. oxygen\nB. carbon dioxide\nC. helium\n\n"
                      "Answer with the letter of the correct option.")  # a letter the model wrote is not doubled
    assert answer == "The answer is B."
    assert arc.format_problem(prompt, answer) is None


@pytest.mark.parametrize("fields, message", [
    ({"options": ["iron", "wood"], "answer_letter": "C"}, "only 2 options"),
    ({"options": ["same", "Same ", "other"], "answer_letter": "A"}, "distinct"),
    ({"options": ["only one"], "answer_letter": "A"}, "at least 2"),
    ({"options": ["iron", "wood"], "answer_letter": "b"}, "literal_error"),
    ({"options": ["A", "B.", "(C)"], "answer_letter": "A"}, "not their letters"),
])
def test_choice_item_refuses_a_letter_without_an_option(fields, message):
    with pytest.raises(ValidationError, match=message):
        ChoiceItem(question="q", **fields)


def test_choice_schema_is_what_the_generator_is_held_to():
    schema = variants_schema(2, ChoiceItem).model_json_schema()
    item = schema["$defs"]["ChoiceItem"]
    assert set(item["required"]) == {"question", "options", "answer_letter"}
    assert item["properties"]["answer_letter"]["enum"] == ["A", "B", "C", "D", "E"]
    assert schema["properties"]["variants"]["minItems"] == 2 and "description" not in schema


def test_number_item_ends_with_one_final_number_line():
    gsm8k = get_task("gsm8k")
    question, answer = NUMBER_FORM.turns(NumberItem(question="Tom has 3 + 4 apples?", solution="3 + 4 = 7\n#### 7",
                                                    final_answer="7"))
    assert answer == "3 + 4 = 7\n#### 7" and gsm8k.format_problem(question, answer) is None
    with pytest.raises(ValidationError):
        NumberItem(question="q", solution="s", final_answer="seven")


def test_choice_stem_round_trips_every_arc_and_hellaswag_prompt():
    for task in ("arc_challenge", "hellaswag"):
        for example in train(task, 20):
            stem, put_back = choice_stem(example.prompt)
            assert put_back(stem) == example.prompt
            assert put_back(f"{stem}\nA. an option the rewriter wrote") == example.prompt
            assert "\nA. " not in stem and stem


def test_tasks_pick_their_forms():
    assert get_task("arc_challenge").sample_form is CHOICE_FORM
    assert get_task("hellaswag").sample_form is CHOICE_FORM
    assert get_task("gsm8k").sample_form is NUMBER_FORM
    assert get_task("squad").sample_form is SPAN_FORM and get_task("humaneval").sample_form is FREE_FORM


@pytest.mark.parametrize("task", ["arc_challenge", "hellaswag", "gsm8k"])
def test_structured_generation_keeps_the_task_format(stand_in, task):
    examples, form = train(task), get_task(task).sample_form
    samples = generate_pattern_samples([STRATEGY], [4], examples, scripted_client("forms"), GenerationConfig(batch_size=2),
                                       form=form)
    failures = [Failure(id=examples[0].id, split="train", input=examples[0].prompt,
                        ground_truth=examples[0].answer, prediction="I do not know.")]
    samples += generate_error_samples(failures, 2, examples, scripted_client("forms"), GenerationConfig(batch_size=2), form=form)
    assert len(samples) == 6
    assert all(get_task(task).format_problem(s.question, s.messages[1]["content"]) is None for s in samples)
    sent = [r for r in stand_in.received if r["schema_name"] == "GeneratedVariants"]
    field = {"arc_challenge": "answer_letter", "hellaswag": "answer_letter", "gsm8k": "final_answer"}[task]
    assert sent and all(field in json.dumps(r["schema"]) for r in sent)
    assert all(field in r["messages"][-1]["content"] for r in sent)  # the prompt names the fields too


def test_structured_off_asks_for_a_free_question_and_answer(stand_in):
    generate_pattern_samples([STRATEGY], [2], train("arc_challenge"), scripted_client("forms"),
                             GenerationConfig(batch_size=2, structured=False), form=CHOICE_FORM)
    sent = [r for r in stand_in.received if r["schema_name"] == "GeneratedVariants"]
    assert sent and "answer_letter" not in json.dumps(sent[0]["schema"])


def test_multiple_choice_rephrasing_rewrites_the_question_and_keeps_the_options(stand_in):
    examples = train("arc_challenge")
    samples = generate_rephrase_samples(examples, 4, scripted_client("forms"), GenerationConfig(batch_size=2), form=CHOICE_FORM)
    by_id = {ex.id: ex for ex in examples}
    for sample in samples:
        original = by_id[sample.based_on_example]
        stem, _ = choice_stem(original.prompt)
        options_block = original.prompt[len(stem):].strip()
        assert sample.question.endswith(options_block) and sample.question.count("\nA. ") == 1
        assert sample.question != original.prompt and sample.messages[1]["content"] == original.answer
    prompts = [r["messages"][-1]["content"] for r in stand_in.received if r["schema_name"] == "Rephrasings"]
    assert all("do not write the options" in p for p in prompts)


def test_unfit_samples_drops_broken_formats_and_repeats():
    from pada.agents.quality import unfit_samples
    from pada.records import SyntheticSample

    arc, examples = get_task("arc_challenge"), train("arc_challenge")

    def sample(sample_id, question, answer="The answer is A."):
        return SyntheticSample(sample_id=sample_id, branch="pattern", based_on_example=examples[0].id,
                               messages=[{"role": "user", "content": question},
                                         {"role": "assistant", "content": answer}])

    new, _ = CHOICE_FORM.turns(ChoiceItem(question="Which of these is a metal?", options=["iron", "wood", "glass"],
                                          answer_letter="A"))
    near = examples[1].prompt.replace("\n\nA. ", " here\n\nA. ", 1)  # one word added to a training question
    samples = [sample("ok", new), sample("again", new.replace("metal?", "metal ?")),
               sample("copy", examples[0].prompt, examples[0].answer), sample("no-options", "Which is a metal?"),
               sample("near", near)]
    assert unfit_samples(arc, examples, samples, max_similarity=0.9) == {
        "the question repeats a training question or another sample": ["again", "copy"],
        "the question lists fewer than two lettered options": ["no-options"],
        "the question is a near copy of a training question or another sample": ["near"]}
    assert "near" not in str(unfit_samples(arc, examples, samples, max_similarity=1.0))
    rephrased = sample("reph", near).model_copy(update={"branch": "rephrase"})  # rephrasings may stay close
    assert unfit_samples(arc, examples, [rephrased], max_similarity=0.9) == {}


def test_a_maths_problem_with_new_numbers_is_not_a_near_copy():
    from pada.agents.quality import unfit_samples
    from pada.records import SyntheticSample

    gsm8k, examples = get_task("gsm8k"), train("gsm8k")
    original = examples[0]
    numbers = sorted({n for n in original.prompt.split() if n.isdigit()}, key=len, reverse=True)
    assert numbers, "the first training problem has a number to change"
    changed = original.prompt.replace(numbers[0], str(int(numbers[0]) + 7))

    def make(sample_id, question):
        return SyntheticSample(sample_id=sample_id, branch="pattern", based_on_example=original.id,
                               messages=[{"role": "user", "content": question},
                                         {"role": "assistant", "content": "So 3 + 4 = 7.\n#### 7"}])

    unfit = unfit_samples(gsm8k, examples, [make("new-numbers", changed), make("same", original.prompt + " Now.")],
                          max_similarity=0.9)
    assert unfit == {"the question is a near copy of a training question or another sample": ["same"]}
