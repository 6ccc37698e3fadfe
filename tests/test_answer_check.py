"""The answer check of quality control: the judge answers each sample's question without seeing its answer,
and a sample whose answer disagrees with the judge's is not accepted, whatever its scores.

The judge is the scripted stand-in (doubles/scripted_llm.py, canned replies, not a model); answers come from
a table keyed by question, so each test says what the judge "knows"."""

import json
import re

import pytest

from conftest import scripted_client as client
from conftest import tiny_run_config
from pada.agents.canaries import CanaryPlanter
from pada.agents.quality import QCBatch, QCConfig, judge_batches, run_qc_rounds
from pada.records import Example, SyntheticSample
from pada.tasks.forms import CHOICE_FORM, FREE_FORM, SPAN_FORM, letters_agree, span_prompt, spans_agree
from pada.tasks.scoring import mc_answer, mc_prompt

CONTEXT = ("The Eiffel Tower was finished in 1889 in Paris by the company of Gustave Eiffel. "
           "It is 330 metres tall and was the tallest structure in the world until 1930.")
ORIGINAL = Example(id="train-0", task="squad", source_split="train",
                   prompt=span_prompt(CONTEXT, "When was the Eiffel Tower finished?"), answer="1889",
                   gold={"answers": ["1889"]})
# What the stand-in judge answers, by question.
KNOWN = {"How tall is the tower?": "330 metres", "Whose company built it?": "Gustave Eiffel",
         "Until when was it the tallest structure?": "1930", "Where is the tower?": "in Paris"}


def sample(n: int, question: str, answer: str, context: str = CONTEXT) -> SyntheticSample:
    return SyntheticSample(sample_id=f"s{n}", branch="error", based_on_example=ORIGINAL.id,
                           messages=[{"role": "user", "content": span_prompt(context, question)},
                                     {"role": "assistant", "content": answer}])


def scores_reply(messages, schema):
    """Every sample scored 9: a judge whose scores alone pass everything (as both bundled judges did)."""
    count = schema["properties"]["scores"]["minItems"]
    return json.dumps({"scores": [{"sample_idx": i, "feedback": "fine", "utility": 9, "relevance": 9}
                                  for i in range(1, count + 1)]})


def answers_from_table(messages, schema):
    text = messages[-1]["content"]
    blocks = re.findall(r"\[Question (\d+)\]\n(.*?)(?=\n\[Question|\nReturn)", text, re.DOTALL)
    answers = []
    for idx, block in blocks:
        question = block.split("Question: ")[-1].split("\n")[0].strip()
        answers.append({"sample_idx": int(idx), "answer": KNOWN.get(question, "no idea")})
    return json.dumps({"answers": answers})


@pytest.fixture
def judge(stand_in):
    stand_in.set_script({"JudgeScores": scores_reply, "JudgeAnswers": answers_from_table})
    return client("judge")


def answer_requests(stand_in):
    return [r for r in stand_in.received if r["schema_name"] == "JudgeAnswers"]


# ---------------------------------------------------------------------------
# When two answers agree


def test_spans_agree_by_squad_token_overlap_not_by_exact_text():
    assert spans_agree("Brooklyn", "in Brooklyn") and spans_agree("330 metres", "Answer: 330 metres.")
    assert spans_agree("the Denver Broncos", "Denver Broncos")
    assert not spans_agree("1889", "1930") and not spans_agree("Gustave Eiffel", "Paris")
    assert not spans_agree("330 metres", "")


def test_letters_agree_whatever_the_wording():
    assert letters_agree("The answer is B.", "B") and letters_agree("The answer is C.", "(C)")
    assert not letters_agree("The answer is B.", "A") and not letters_agree("The answer is B.", "I am not sure")


# ---------------------------------------------------------------------------
# In a judge call


def test_a_wrong_answer_the_scores_pass_is_rejected_with_the_judges_answer_in_its_feedback(judge, stand_in):
    samples = [sample(0, "How tall is the tower?", "330 metres"), sample(1, "Whose company built it?", "1889"),
               sample(2, "Where is the tower?", "Paris")]
    [results] = judge_batches(judge, [QCBatch(ORIGINAL, form=SPAN_FORM)], [samples], 1, QCConfig())
    assert [r.average for r in results] == [9.0, 9.0, 9.0]
    assert [r.answer_agrees for r in results] == [True, False, True]
    assert [r.passed for r in results] == [True, False, True]
    assert results[1].judge_answer == "Gustave Eiffel"
    assert results[1].feedback.startswith("The judge's own answer is 'Gustave Eiffel', not '1889'.")
    assert results[0].feedback == "fine"


def test_the_judge_is_shown_the_questions_never_the_answers_and_a_shared_context_once(judge, stand_in):
    other = "Mount Everest is the highest mountain above sea level, on the border of Nepal and China."
    samples = [sample(0, "Until when was it the tallest structure?", "1930"),
               sample(1, "Which mountain is the highest?", "Mount Everest", context=other)]
    judge_batches(judge, [QCBatch(ORIGINAL, form=SPAN_FORM)], [samples], 1, QCConfig())
    texts = [request["messages"][-1]["content"] for request in answer_requests(stand_in)]
    assert len(texts) == 2  # one call per context: each question beside its own paragraph
    assert texts[0].startswith(f"Context: {CONTEXT}\n") and other not in texts[0]
    assert texts[1].startswith(f"Context: {other}\n") and CONTEXT not in texts[1]
    assert "1930" not in texts[0].replace(CONTEXT, "") and "Mount Everest" not in texts[1].replace(other, "")
    assert "1889" not in texts[0].replace(CONTEXT, "")  # nor the original's answer
    assert all("Answer with a short span copied from the context." in text for text in texts)
    assert all(text.count("[Question ") == 1 for text in texts)


def test_multiple_choice_samples_are_checked_by_letter(stand_in):
    question = mc_prompt("Which gas do plants take in?", ["oxygen", "carbon dioxide", "helium"])
    stand_in.set_script({"JudgeScores": scores_reply,
                         "JudgeAnswers": lambda m, s: json.dumps({"answers": [{"sample_idx": 1, "answer": "B"},
                                                                              {"sample_idx": 2, "answer": "B"}]})})
    original = Example(id="arc-0", task="arc_challenge", source_split="train", prompt=question, answer=mc_answer("B"))
    samples = [SyntheticSample(sample_id=f"s{n}", branch="error", based_on_example="arc-0",
                               messages=[{"role": "user", "content": question},
                                         {"role": "assistant", "content": mc_answer(letter)}])
               for n, letter in enumerate("BA")]
    [results] = judge_batches(client("judge"), [QCBatch(original, form=CHOICE_FORM)], [samples], 1, QCConfig())
    assert [r.passed for r in results] == [True, False]


def test_no_answer_call_where_the_form_cannot_compare_answers_or_the_check_is_off(judge, stand_in):
    samples = [sample(0, "Whose company built it?", "1889")]
    [free] = judge_batches(judge, [QCBatch(ORIGINAL, form=FREE_FORM)], [samples], 1, QCConfig())
    [off] = judge_batches(judge, [QCBatch(ORIGINAL, form=SPAN_FORM)], [samples], 1, QCConfig(answer_check=False))
    assert not answer_requests(stand_in)
    assert free[0].passed and off[0].passed and free[0].answer_agrees is None and off[0].judge_answer is None


def test_a_failed_answer_call_leaves_the_scores_verdict(stand_in):
    stand_in.set_script({"JudgeScores": scores_reply, "JudgeAnswers": "I cannot answer these."})
    samples = [sample(0, "Whose company built it?", "1889")]
    [results] = judge_batches(client("judge"), [QCBatch(ORIGINAL, form=SPAN_FORM)], [samples], 1, QCConfig())
    assert results[0].passed and results[0].answer_agrees is None and results[0].ok


# ---------------------------------------------------------------------------
# In the loop


def test_a_disagreeing_sample_is_rejected_but_does_not_make_its_batch_regenerate(judge, stand_in):
    def generate(requests, attempt):
        return [[sample(0, "How tall is the tower?", "330 metres"), sample(1, "Whose company built it?", "Paris")]
                for _ in requests]

    outcome = run_qc_rounds(generate, [QCBatch(ORIGINAL, form=SPAN_FORM)], judge, QCConfig())
    assert outcome.attempts_per_batch == [1]  # the batch's mean score decides regeneration, as in the paper
    assert [s.sample_id for s in outcome.accepted] == ["s0"] and [s.sample_id for s in outcome.rejected] == ["s1"]


def test_planted_wrong_answers_are_caught_by_the_answer_check(stand_in):
    """Every planted span sample is judged 9 by the scores; the judge answers each question with the context's
    real answer (read off the training examples), so the wrong spans and mismatched questions are caught and
    the controls pass."""
    train = [Example(id=f"train-{n}", task="squad", source_split="train", prompt=span_prompt(c, q), answer=a,
                     gold={"answers": [a]})
             for n, (c, q, a) in enumerate([
                 (CONTEXT, "When was the Eiffel Tower finished?", "1889"),
                 ("Mount Everest, on the border of Nepal and China, is the highest mountain above sea level.",
                  "Which mountain is the highest above sea level?", "Mount Everest"),
                 ("The Nile flows north through eleven countries and ends in the Mediterranean Sea.",
                  "Where does the Nile end?", "the Mediterranean Sea"),
                 ("Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911.",
                  "When did Marie Curie win the Nobel Prize in Chemistry?", "1911")])]
    right = {ex.prompt.split("Question: ")[1].split("\n")[0]: ex.answer for ex in train}

    def answers(messages, schema):
        blocks = re.findall(r"\[Question (\d+)\]\n(.*?)(?=\n\[Question|\nReturn)", messages[-1]["content"], re.DOTALL)
        return json.dumps({"answers": [{"sample_idx": int(i), "answer": right.get(
            block.split("Question: ")[-1].split("\n")[0].strip(), "no idea")} for i, block in blocks]})

    stand_in.set_script({"JudgeScores": scores_reply, "JudgeAnswers": answers})
    planter = CanaryPlanter(train, SPAN_FORM, count=6, seed=0)

    def generate(requests, attempt):
        return [[sample(10 + i, "How tall is the tower?", "330 metres")] for i, _ in requests]

    batches = [QCBatch(ex, form=SPAN_FORM) for ex in train]
    outcome = run_qc_rounds(generate, batches, client("judge"), QCConfig(), planter)
    bad = [v for v in outcome.canaries if not v.control]
    controls = [v for v in outcome.canaries if v.control]
    assert controls and all(v.passed for v in controls)
    caught = {v.kind for v in bad if not v.passed}
    assert {v.kind for v in bad if v.kind != "copy"} <= caught  # a copy's answer is right: the sample check drops it
    assert all("The judge's own answer is" in v.feedback for v in bad if v.kind in ("wrong_answer", "not_span"))


def test_the_pipeline_records_the_judges_answers(tmp_path, tiny_slm_dir):
    """A whole run with the check on (the stand-in's crude reader answers): every judged sample of the
    pattern and error branches has the judge's answer recorded, and only agreeing ones are accepted."""
    from doubles.pada_script import install
    from pada.config import from_dict
    from pada.pipeline import Pipeline, start_run
    from pada.store import RunStore

    install()
    config = from_dict(tiny_run_config(tiny_slm_dir, analyse_last_iteration=False,
                                       qc={"answer_check": True}))
    store = start_run(config, runs_root=tmp_path, run_id="checked")
    assert Pipeline(store, config).run() == "completed"
    store.close()
    with RunStore.open(tmp_path / "checked", readonly=True) as store:
        stored = store.samples(1, limit=None)
    judged = [a for a in stored if a.qc is not None and a.qc.ok and a.sample.branch != "rephrase"]
    assert judged and all(a.qc.answer_agrees is not None and a.qc.judge_answer for a in judged)
    assert all(a.qc.answer_agrees for a in judged if a.qc.passed)
    assert any(not a.qc.answer_agrees for a in judged)  # the crude reader disagrees with some
