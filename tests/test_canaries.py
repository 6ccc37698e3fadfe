"""Planted samples check the judge: built from training examples, mixed into QC, recorded apart.

The judge is the scripted stand-in (tests/doubles/scripted_generation.py, canned scores, not a model): it
rejects copies and replies that end unlike the original's, and passes wrong answers, so it is a judge the
check should warn about."""

import json
import random
import shutil
from pathlib import Path

import pytest

from conftest import scripted_client
from doubles.scripted_generation import generation_script
from pada import cli
from pada.agents.canaries import (
    CONTROL,
    MAX_PER_BATCH,
    CanaryPlanter,
    CanaryVerdict,
    bad_kinds,
    build_pair,
    judge_warning,
    split_count,
    summarise,
)
from pada.agents.quality import QCBatch, QCConfig, run_qc_rounds
from pada.records import Example, Strategy, SyntheticSample
from pada.store import RunStore
from pada.store.schema import migrate
from pada.tasks import get_task
from pada.tasks.forms import CHOICE_FORM, FREE_FORM, NUMBER_FORM, SPAN_FORM, OPTION_LINE, is_span, span_parts, span_prompt
from pada.tasks.scoring import extract_number

STRATEGY = Strategy(cluster_id=0, category_name="c", strategy_name="Careful reading", generation_approach="g")


def train(task: str, n: int = 8):
    return get_task(task).splits(train_size=n, val_size=2, test_size=2).train


def squad_examples() -> list[Example]:
    """Two SQuAD-layout examples, made here so no test loads the 87 MB train file twice."""
    contexts = [("The Eiffel Tower was finished in 1889 in Paris by the company of Gustave Eiffel.",
                 "When was the Eiffel Tower finished?", "1889"),
                ("Mount Everest, on the border of Nepal and China, is the highest mountain above sea level.",
                 "Which mountain is the highest above sea level?", "Mount Everest")]
    return [Example(id=f"train-{n}", task="squad", source_split="train", prompt=span_prompt(c, q), answer=a,
                    gold={"answers": [a]}) for n, (c, q, a) in enumerate(contexts)]


# ---------------------------------------------------------------------------
# Building each kind


def test_every_kind_is_built_for_multiple_choice():
    arc = get_task("arc_challenge")
    example, donor = train("arc_challenge")[:2]
    rng = random.Random(0)
    prompt, answer = build_pair("wrong_answer", CHOICE_FORM, example, donor, rng)
    assert prompt == example.prompt and answer != example.answer and arc.format_problem(prompt, answer) is None
    assert arc.format_problem(*build_pair("format", CHOICE_FORM, example, donor, rng)) is not None
    mismatch = build_pair("mismatch", CHOICE_FORM, example, donor, rng)
    assert mismatch[1] == donor.answer and OPTION_LINE.search(mismatch[0])
    assert mismatch[0].split("\n\nA. ")[0] in example.prompt and mismatch[0].endswith(donor.prompt.split("\n\nA. ", 1)[1])
    assert build_pair("copy", CHOICE_FORM, example, donor, rng) == (example.prompt, example.answer)
    assert build_pair(CONTROL, CHOICE_FORM, example, donor, rng) == (example.prompt, example.answer)


def test_every_kind_is_built_for_maths():
    example, donor = train("gsm8k")[:2]
    rng = random.Random(0)
    prompt, answer = build_pair("wrong_answer", NUMBER_FORM, example, donor, rng)
    assert prompt == example.prompt and extract_number(answer) != extract_number(example.answer)
    assert "####" not in build_pair("format", NUMBER_FORM, example, donor, rng)[1]
    assert build_pair("mismatch", NUMBER_FORM, example, donor, rng) == (example.prompt, donor.answer)


def test_every_kind_is_built_for_spans():
    example, donor = squad_examples()
    context = span_parts(example.prompt)[0]
    rng = random.Random(0)
    prompt, answer = build_pair("wrong_answer", SPAN_FORM, example, donor, rng)
    assert prompt == example.prompt and is_span(answer, context) and "1889" not in answer
    prompt, answer = build_pair("not_span", SPAN_FORM, example, donor, rng)
    assert prompt == example.prompt and not is_span(answer, context)
    prompt, answer = build_pair("mismatch", SPAN_FORM, example, donor, rng)
    assert span_parts(prompt) == (context, "Which mountain is the highest above sea level?") and answer == "1889"
    assert set(bad_kinds(SPAN_FORM)) == {"wrong_answer", "not_span", "copy", "mismatch"}


def test_free_form_tasks_get_a_mismatched_and_a_cut_answer():
    example, donor = train("humaneval")[:2]
    rng = random.Random(0)
    assert build_pair("mismatch", FREE_FORM, example, donor, rng) == (example.prompt, donor.answer)
    _, cut = build_pair("format", FREE_FORM, example, donor, rng)
    assert example.answer.startswith(cut) and len(cut) < len(example.answer)


def test_a_third_are_controls_and_zero_plants_nothing():
    assert split_count(6) == (4, 2) and split_count(3) == (2, 1) and split_count(1) == (1, 0)
    examples = train("arc_challenge")
    planter = CanaryPlanter(examples, CHOICE_FORM, 0)
    assert planter.plant([QCBatch(examples[0])], [[_sample("s", examples[0])]]) == [[]]


# ---------------------------------------------------------------------------
# Mixed into QC, recorded apart


def _sample(sample_id: str, example: Example, question: str | None = None) -> SyntheticSample:
    return SyntheticSample(sample_id=sample_id, branch="pattern", based_on_strategy=STRATEGY.strategy_name,
                           based_on_example=example.id,
                           messages=[{"role": "user", "content": question or f"New: {example.prompt}"},
                                     {"role": "assistant", "content": example.answer}])


class Generator:
    """Two real samples per batch; records which batches it was asked to (re)generate."""

    def __init__(self, originals: list[Example]):
        self.originals, self.requests = originals, []

    def __call__(self, requests, attempt):
        self.requests.append((attempt, [i for i, _ in requests]))
        return [[_sample(f"b{i}-a{attempt}-{n}", self.originals[i], f"Variant {n} {attempt}: "
                         f"{self.originals[i].prompt}") for n in range(2)] for i, _ in requests]


def judge_texts(stand_in) -> list[str]:
    return [r["messages"][-1]["content"] for r in stand_in.received if r["schema_name"].startswith("JudgeScores")]


def test_canaries_are_judged_with_the_real_samples_and_kept_out_of_the_outcome(stand_in):
    examples = train("arc_challenge")
    batches = [QCBatch(examples[i], STRATEGY) for i in range(4)]
    planter = CanaryPlanter(examples, CHOICE_FORM, 6, seed=3, iteration=1)
    outcome = run_qc_rounds(Generator(examples), batches, scripted_client("judge"), QCConfig(), planter)
    assert len(outcome.canaries) == 6 and sum(v.control for v in outcome.canaries) == 2
    assert {v.kind for v in outcome.canaries} == {*bad_kinds(CHOICE_FORM), CONTROL}
    assert all(v.ok and v.average is not None for v in outcome.canaries)
    ids = {v.canary_id for v in outcome.canaries}
    for records in (outcome.accepted, outcome.rejected, outcome.attempts, outcome.qc_results):
        assert not ids & {r.sample_id for r in records}
    assert len(outcome.qc_results) == len(outcome.attempts) == 8  # the real samples only
    texts = judge_texts(stand_in)
    counts = [text.count("[Sample ") for text in texts]
    assert sum(counts) == 8 + 6 and max(counts) <= 2 + MAX_PER_BATCH  # mixed in, a few per batch
    for verdict in outcome.canaries:  # each shown to the judge exactly like a sample
        shown = f"User: {verdict.messages[0]['content']}\nAssistant: {verdict.messages[1]['content']}"
        assert any(shown in text for text in texts)
    summary = summarise(outcome.canaries)
    assert summary["planted"] == 4 and summary["judged"] == 4 and summary["controls"] == 2
    # the stand-in rejects the copy and the broken format, passes the wrong letter and the mismatch
    passed = {v.kind for v in outcome.canaries if not v.control and v.passed}
    assert passed == {"wrong_answer", "mismatch"} and summary["catch_rate"] == 0.5
    assert judge_warning(summary) is not None


def test_same_seed_same_canaries():
    examples = train("gsm8k")
    batches = [QCBatch(examples[i]) for i in range(3)]
    samples = [[_sample(f"s{i}", examples[i])] for i in range(3)]
    first = CanaryPlanter(examples, NUMBER_FORM, 6, seed=1, iteration=2).plant(batches, samples)
    again = CanaryPlanter(examples, NUMBER_FORM, 6, seed=1, iteration=2).plant(batches, samples)
    other = CanaryPlanter(examples, NUMBER_FORM, 6, seed=2, iteration=2).plant(batches, samples)
    key = lambda planted: [[(p, s.messages, v.kind) for p, s, v in batch] for batch in planted]  # noqa: E731
    assert key(first) == key(again) != key(other)
    assert all(v.canary_id.startswith("it2-canary-") for batch in first for _, _, v in batch)


def test_regeneration_rounds_never_regenerate_or_replant_canaries(stand_in):
    examples = train("arc_challenge")
    def low(messages, schema):  # every sample scored 3: every batch is regenerated
        count = schema["properties"]["scores"]["minItems"]
        return json.dumps({"scores": [{"sample_idx": n, "feedback": "weak", "adherence": 3, "utility": 3,
                                       "relevance": 3} for n in range(1, count + 1)]})

    stand_in.set_script({**generation_script(), "JudgeScoresWithStrategy": low})
    generator = Generator(examples)
    batches = [QCBatch(examples[i], STRATEGY) for i in range(2)]
    outcome = run_qc_rounds(generator, batches, scripted_client("judge"), QCConfig(max_regenerations=2),
                            CanaryPlanter(examples, CHOICE_FORM, 3))
    assert [attempt for attempt, _ in generator.requests] == [1, 2, 3]
    assert all(set(indices) <= {0, 1} for _, indices in generator.requests)  # real batches only
    assert len(outcome.canaries) == 3  # planted once, in the first round
    texts = judge_texts(stand_in)
    assert [text.count("[Sample ") for text in texts[2:]] == [2, 2, 2, 2]  # later rounds: the real samples
    assert not {v.canary_id for v in outcome.canaries} & {s.sample_id for s in outcome.attempts}


def test_no_canaries_without_a_judge():
    from pada.agents.budget import plan_budget
    from pada.agents.generation import generate_and_qc

    examples = train("arc_challenge")
    outcome = generate_and_qc([STRATEGY], plan_budget(8, 1, 0), examples, [], scripted_client("gen"),
                              scripted_client("judge"), qc_config=QCConfig(qc_disabled=True), form=CHOICE_FORM)
    assert outcome.accepted and outcome.canaries == []
    with pytest.raises(ValueError, match="canaries"):
        QCConfig(canaries=-1)


# ---------------------------------------------------------------------------
# Stored, shown, warned about


def _verdict(n: int, passed: bool, control: bool = False, iteration: int = 1) -> CanaryVerdict:
    return CanaryVerdict(canary_id=f"it{iteration}-canary-{n}", iteration=iteration,
                         kind=CONTROL if control else "wrong_answer", control=control, based_on_example="train-1",
                         shown_with="train-2", messages=[{"role": "user", "content": "q"},
                                                         {"role": "assistant", "content": "a"}],
                         average=8.0 if passed else 3.0, passed=passed, ok=True)


def test_status_warns_when_the_judge_passes_every_canary(tmp_path, capsys):
    store = RunStore.create({"task": "gsm8k", "method": "pada", "iterations": 2}, runs_root=tmp_path)
    store.save_canaries(1, [_verdict(n, True) for n in range(4)] + [_verdict(9, True, control=True)])
    store.save_canaries(2, [_verdict(n, n > 0, iteration=2) for n in range(3)])
    assert cli.main(["status", str(store.path)]) == 0
    out = capsys.readouterr().out
    assert "judge     it1 rejected 0/4 planted bad samples (0%), accepted 1/1 training examples (100%)" in out
    assert "judge     it2 rejected 1/3 planted bad samples (33%)" in out
    warnings = [line for line in out.splitlines() if line.startswith("warning")]
    assert len(warnings) == 2 and "iteration 1: the judge passed 4 of 4 planted bad samples" in warnings[0]
    assert cli.main(["status", str(store.path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["judge_check"]["1"]["catch_rate"] == 0.0 and info["judge_check"]["2"]["catch_rate"] == 0.3333
    assert len(info["warnings"]) == 2


def test_a_run_from_before_the_canaries_table_reads_without_one(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "old"
    run_dir.mkdir(parents=True)
    import sqlite3

    conn = sqlite3.connect(run_dir / "run.db", isolation_level=None)
    migrate(conn, target=2)
    conn.execute("INSERT INTO run VALUES (1, 'old', 't0', 't0', ?, 'completed', 2, NULL, NULL, NULL)",
                 (json.dumps({"task": "gsm8k", "method": "pada"}),))
    conn.close()
    with RunStore.open(run_dir, readonly=True) as view:
        assert view.canaries() == []
    assert cli.main(["status", str(run_dir)]) == 0
    assert "judge " not in capsys.readouterr().out
    writer = RunStore.open(run_dir)  # a writer migrates: the table appears
    writer.save_canaries(1, [_verdict(0, False)])
    assert [row["canary_id"] for row in writer.canaries(1)] == ["it1-canary-0"]
    writer.close()


def test_the_pipeline_records_canaries_and_never_trains_on_them(pipeline_run, tmp_path, capsys):
    runs_root, run_id = pipeline_run
    with RunStore.open(runs_root / run_id, readonly=True) as store:
        verdicts = [CanaryVerdict.model_validate(row) for row in store.canaries()]
        assert verdicts and {v.iteration for v in verdicts} == {1}
        assert len(verdicts) == QCConfig().canaries and sum(v.control for v in verdicts) == 2
        ids = {v.canary_id for v in verdicts}
        texts = {v.messages[1]["content"] + v.messages[0]["content"] for v in verdicts if v.kind != CONTROL
                 and v.kind != "copy"}  # a control or copy *is* a training example
        samples = store.samples(1, limit=None)
        assert samples and not ids & {s.sample.sample_id for s in samples}
        assert store.sample_count(1) == len(samples)
        assert sum(row["count"] for row in store.sample_counts(1, group_by=("status",))) == len(samples)
        rows = store.training_set(2)
        assert rows and not ids & {row.id for row in rows}
        trained = {row.messages[1]["content"] + row.messages[0]["content"] for row in rows}
        assert not texts & trained
        assert all("canary" not in json.dumps(row.messages) for row in rows)
        events = [e.message for e in store.events(limit=200)]
        assert any(m.startswith("judge check: rejected") for m in events)
    # the stand-in judge passes wrong letters and mismatched answers: half of the bad samples
    assert cli.main(["status", str(runs_root / run_id)]) == 0
    out = capsys.readouterr().out
    assert "judge     it1 rejected 2/4 planted bad samples (50%)" in out
    assert "warning   iteration 1: the judge passed 2 of 4 planted bad samples" in out


def test_the_synthetic_review_page_shows_the_judge_check(pipeline_run, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    source_root, run_id = pipeline_run
    root = tmp_path / "runs"
    shutil.copytree(source_root / run_id, root / run_id)
    monkeypatch.setenv("PADA_RUNS_DIR", str(root))
    app = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60).run()
    app.switch_page("pages/samples.py").run()
    assert not app.exception, [e.value for e in app.exception]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics.get("Judge catch rate") == "50%"
    assert any("planted bad samples" in w.value for w in app.warning)
    assert not any("canary" in str(frame.value) for frame in app.dataframe)
