"""Task loaders: malformed source lines, custom JSONL files, the registry, the hub fallback's error."""

import json

import pytest

from pada.tasks import TASK_NAMES, TaskError, clear_cache, get_task
from pada.tasks.custom import CustomTask


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_cache()
    yield
    clear_cache()


def write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def arc_record(i, answer="A", labels="ABCD"):
    choices = [{"text": f"option {label} of {i}", "label": label} for label in labels]
    return {"id": f"q{i}", "question": {"stem": f"Question {i}?", "choices": choices}, "answerKey": answer}


def make_arc(root, bad_line=None, bad_record=None):
    for split, n in (("Train", 6), ("Dev", 3), ("Test", 4)):
        records = [arc_record(f"{split}{i}") for i in range(n)]
        if split == "Train" and bad_record is not None:
            records[bad_line] = bad_record
        write_jsonl(root / "arc_challenge" / f"ARC-Challenge-{split}.jsonl", records)


# ----------------------------------------------------------------------------- malformed source lines

def test_arc_invalid_json_names_file_and_line(tmp_path):
    make_arc(tmp_path, bad_line=2, bad_record='{"id": "q2", "question": ')
    with pytest.raises(TaskError) as err:
        get_task("arc_challenge", tmp_path).pools()
    message = str(err.value)
    assert "ARC-Challenge-Train.jsonl" in message and "line 3" in message and "not valid JSON" in message


@pytest.mark.parametrize("record, field", [
    ({"id": "x", "question": {"stem": "Q?", "choices": [{"text": "a", "label": "A"}, {"text": "b", "label": "B"}]}},
     "answerKey"),
    ({"id": "x", "question": {"stem": "Q?", "choices": [{"text": "a", "label": "A"}, {"text": "b", "label": "B"}]},
      "answerKey": "E"}, "answerKey"),
    ({"id": "x", "question": {"choices": []}, "answerKey": "A"}, "question.stem"),
    ({"id": "x", "question": {"stem": "Q?", "choices": "A or B"}, "answerKey": "A"}, "question.choices"),
    ({"id": "x", "question": "Q?", "answerKey": "A"}, "question"),
])
def test_arc_bad_field_names_line_and_field(tmp_path, record, field):
    make_arc(tmp_path, bad_line=4, bad_record=record)
    with pytest.raises(TaskError) as err:
        get_task("arc_challenge", tmp_path).pools()
    assert "line 5" in str(err.value) and f"field '{field}'" in str(err.value)


def test_arc_numeric_labels_are_shown_as_letters(tmp_path):
    make_arc(tmp_path, bad_line=0, bad_record=arc_record("n", answer="3", labels="1234"))
    example = get_task("arc_challenge", tmp_path).examples_by_id()["qn"]
    assert "\nC. option 3 of n" in example.prompt and example.answer == "The answer is C."
    assert example.gold["label"] == "C" and example.gold["numeric_labels"]


def test_gsm8k_answer_without_marker_is_reported(tmp_path):
    good = {"question": "1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"}
    write_jsonl(tmp_path / "gsm8k" / "train.jsonl", [good, good, {"question": "2+2?", "answer": "4"}])
    write_jsonl(tmp_path / "gsm8k" / "test.jsonl", [good])
    with pytest.raises(TaskError, match=r"train\.jsonl line 3: field 'answer'"):
        get_task("gsm8k", tmp_path).pools()


def test_gsm8k_ids_and_calculator_annotations(tmp_path):
    records = [{"question": f"What is {i}+{i}?", "answer": f"{i}+{i}=<<{i}+{i}={2 * i}>>{2 * i}\n#### {2 * i:,}"}
               for i in range(600)]
    write_jsonl(tmp_path / "gsm8k" / "train.jsonl", records)
    write_jsonl(tmp_path / "gsm8k" / "test.jsonl", records[:3])
    pools = get_task("gsm8k", tmp_path).pools()
    assert (len(pools.train), len(pools.validation), len(pools.test)) == (100, 500, 3)
    test0 = pools.test[0]
    assert test0.id == "test-0" and "<<" not in test0.answer and test0.answer.endswith("#### 0")
    by_id = get_task("gsm8k", tmp_path).examples_by_id()
    assert by_id["train-599"].gold["number"] == "1198"  # "#### 1,198" parsed without the comma


def test_hellaswag_bad_label_is_reported(tmp_path):
    record = {"ind": 1, "activity_label": "x", "ctx_a": "A man", "ctx_b": "he", "ctx": "A man he", "label": 7,
              "endings": ["a", "b", "c", "d"], "source_id": "s1", "split": "val", "split_type": "indomain"}
    write_jsonl(tmp_path / "hellaswag" / "hellaswag_val.jsonl", [record])
    with pytest.raises(TaskError, match=r"hellaswag_val\.jsonl line 1: field 'label'"):
        get_task("hellaswag", tmp_path).pools()


def test_mbpp_bad_test_list_is_reported(tmp_path):
    write_jsonl(tmp_path / "humaneval" / "HumanEval.jsonl",
                [{"task_id": "HumanEval/0", "prompt": "def f():\n", "canonical_solution": "    return 1\n",
                  "test": "def check(c):\n    assert c() == 1\n", "entry_point": "f"}])
    write_jsonl(tmp_path / "mbpp" / "mbpp.jsonl",
                [{"task_id": 601, "text": "t", "code": "def g():\n  return 1", "test_list": "assert g() == 1",
                  "test_setup_code": ""}])
    with pytest.raises(TaskError, match=r"mbpp\.jsonl line 1: field 'test_list'"):
        get_task("humaneval", tmp_path).pools()


def test_blank_lines_are_skipped_but_counted(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"input": "a", "answer": "1"}, "", {"input": "b"}])
    with pytest.raises(TaskError, match=r"c\.jsonl line 3: field 'answer' is missing"):
        get_task("custom", tmp_path, path=path).pools()


# ----------------------------------------------------------------------------- custom task

def test_custom_messages_and_input_answer(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+3?"},
                      {"role": "assistant", "content": "5"}], "split": "train"},
        {"input": "10-4?", "answer": "The answer is 6.", "split": "validation"},
        {"input": "7*6?", "answer": 42, "split": "test", "id": "ignored-because-not-all-have-ids"},
    ])
    task = get_task(f"custom:{path}", scorer="number")
    pools = task.pools()
    assert [ex.id for ex in pools.train] == ["custom-0"]
    assert pools.train[0].prompt == "Be brief.\n\n2+3?" and pools.train[0].answer == "5"
    assert [ex.id for ex in pools.validation] == ["custom-1"] and [ex.id for ex in pools.test] == ["custom-2"]
    assert task.metric == "accuracy"
    assert task.score(pools.test[0], "6*7 = 42").correct
    assert not task.score(pools.validation[0], "5").correct


def test_custom_own_ids_and_fixed_carve(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [{"id": f"q{i}", "input": f"say {i}", "answer": f"{i} apples"}
                                                 for i in range(50)])
    task = get_task("custom", path=path, scorer="exact")
    pools = task.pools()
    assert (len(pools.train), len(pools.validation), len(pools.test)) == (30, 10, 10)
    assert pools.train[0].id.startswith("q")
    example = task.examples_by_id()["q7"]
    score = task.score(example, "The answer is 7 apples.")
    assert score.correct and score.metrics == {"exact_match": 1.0, "f1": 1.0}


def test_custom_multiple_choice_with_choices(tmp_path):
    path = write_jsonl(tmp_path / "mc.jsonl", [
        {"input": "Sky colour?", "choices": ["green", "blue"], "answer": "B"},
        {"input": "Grass colour?", "choices": ["green", "blue"], "answer": 0},
        {"input": "Snow colour?", "choices": ["white", "black"], "answer": "white"},
        {"messages": [{"role": "user", "content": "Pick: A. up B. down"},
                      {"role": "assistant", "content": "The answer is A."}]},
    ])
    task = get_task("custom", path=path, scorer="mc")
    by_id = task.examples_by_id()
    assert by_id["custom-0"].prompt.splitlines()[2:4] == ["A. green", "B. blue"]
    assert by_id["custom-0"].answer == "The answer is B."
    assert [by_id[f"custom-{i}"].gold["label"] for i in range(4)] == ["B", "A", "A", "A"]
    assert task.score(by_id["custom-0"], "blue").correct
    assert task.score(by_id["custom-3"], "(a)").correct


def test_custom_code_task(tmp_path):
    path = write_jsonl(tmp_path / "code.jsonl", [
        {"input": "Write double(x).", "answer": "```python\ndef double(x):\n    return 2 * x\n```",
         "test_list": ["assert double(2) == 4"], "entry_point": "double"},
    ])
    task = get_task("custom", path=path, scorer="code", timeout_s=5)
    example = task.pools().train[0]
    assert task.metric == "pass@1"
    assert task.score(example, example.answer).correct
    assert not task.score(example, "def double(x):\n    return x\n").correct


@pytest.mark.parametrize("record, field", [
    ({"input": "q"}, "answer"),
    ({"answer": "a"}, "input"),
    ({"messages": [{"role": "user", "content": "q"}]}, "messages"),
    ({"messages": "hello"}, "messages"),
    ({"input": "q", "answer": "a", "split": "holdout"}, "split"),
])
def test_custom_bad_lines(tmp_path, record, field):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"input": "fine", "answer": "yes"}, record])
    with pytest.raises(TaskError) as err:
        get_task("custom", path=path).pools()
    assert "bad.jsonl line 2" in str(err.value) and f"field '{field}'" in str(err.value)


@pytest.mark.parametrize("scorer, record, field", [
    ("number", {"input": "q", "answer": "no digits"}, "answer"),
    ("mc", {"input": "q", "choices": ["x", "y"], "answer": "maybe"}, "answer"),
    ("code", {"input": "q", "answer": "def f(): pass"}, "test_list"),
])
def test_custom_scorer_specific_fields(tmp_path, scorer, record, field):
    path = write_jsonl(tmp_path / "bad.jsonl", [record])
    with pytest.raises(TaskError) as err:
        get_task("custom", path=path, scorer=scorer).pools()
    assert "line 1" in str(err.value) and f"field '{field}'" in str(err.value)


def test_custom_errors_for_missing_file_and_scorer(tmp_path):
    with pytest.raises(TaskError, match="not found"):
        get_task("custom", path=tmp_path / "nope.jsonl").pools()
    with pytest.raises(TaskError, match="unknown scorer"):
        CustomTask(path=tmp_path / "x.jsonl", scorer="bleu")
    with pytest.raises(TaskError, match="custom:<path>"):
        get_task("custom")


# ----------------------------------------------------------------------------- registry and data dir

def test_unknown_task_lists_valid_names():
    with pytest.raises(TaskError) as err:
        get_task("mmlu")
    for name in TASK_NAMES:
        assert name in str(err.value)


def test_unknown_option_is_a_task_error():
    with pytest.raises(TaskError, match="bad option"):
        get_task("gsm8k", colour="blue")


def test_task_objects_are_cached(tmp_path):
    make_arc(tmp_path)
    assert get_task("arc_challenge", tmp_path) is get_task("arc_challenge", str(tmp_path))


def test_missing_data_dir_is_an_error_not_a_hub_download(tmp_path, monkeypatch):
    from pada.tasks import hub

    def no_hub(*args):
        raise AssertionError("a configured but missing data dir must not fall back to the hub")

    monkeypatch.setattr(hub, "_load", no_hub)
    missing = tmp_path / "nowhere"
    for kwargs, source in (({"data_dir": missing}, "--data-dir"), ({}, "PADA_DATA_DIR")):
        if not kwargs:
            monkeypatch.setenv("PADA_DATA_DIR", str(missing))
        with pytest.raises(TaskError) as err:
            get_task("gsm8k", **kwargs)
        message = str(err.value)
        assert "\n" not in message and str(missing) in message and "does not exist" in message
        assert source in message and "--data-dir" in message and "PADA_DATA_DIR" in message


def test_no_configured_data_dir_falls_back_to_the_hub(tmp_path, monkeypatch):
    from pada import paths
    from pada.tasks import hub

    monkeypatch.delenv("PADA_DATA_DIR", raising=False)
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "repo")  # ../shared/data does not exist there
    monkeypatch.setattr(hub, "_load", fake_hub_load)
    assert [ex.id for ex in get_task("arc_challenge").pools().train] == ["h1"]


def test_data_dir_from_environment(tmp_path, monkeypatch):
    make_arc(tmp_path)
    monkeypatch.setenv("PADA_DATA_DIR", str(tmp_path))
    assert len(get_task("arc_challenge").pools().train) == 6


# ----------------------------------------------------------------------------- hub fallback (no network)

HUB_ROWS = {
    ("allenai/ai2_arc", "train"): [{"id": "h1", "question": "Q1?", "choices": {"text": ["x", "y"], "label": ["1", "2"]},
                                    "answerKey": "2"}],
    ("allenai/ai2_arc", "validation"): [{"id": "h2", "question": "Q2?",
                                         "choices": {"text": ["x", "y"], "label": ["A", "B"]}, "answerKey": "A"}],
    ("allenai/ai2_arc", "test"): [{"id": "h3", "question": "Q3?", "choices": {"text": ["x", "y"], "label": ["A", "B"]},
                                   "answerKey": "B"}],
    ("rajpurkar/squad", "validation"): [{"id": "d1", "title": "T", "context": "Paris is in France.",
                                         "question": "Where is Paris?",
                                         "answers": {"text": ["France"], "answer_start": [12]}}],
}


def fake_hub_load(repo, config, split):
    """Rows shaped like the hub's datasets (what `datasets.load_dataset` would return)."""
    return HUB_ROWS[(repo, split)]


def test_hub_rows_become_the_local_records(tmp_path, monkeypatch):
    from pada.tasks import hub

    monkeypatch.setattr(hub, "_load", fake_hub_load)
    (tmp_path / "empty").mkdir()  # an existing data dir without the task's files: those come from the hub
    task = get_task("arc_challenge", tmp_path / "empty")
    pools = task.pools()
    assert [ex.id for ex in pools.train + pools.validation + pools.test] == ["h1", "h2", "h3"]
    assert pools.train[0].gold["label"] == "B" and pools.train[0].gold["numeric_labels"]
    assert pools.train[0].prompt.startswith("Q1?\n\nA. x\nB. y")
    squad = get_task("squad", tmp_path / "empty")
    assert squad.lookup(["d1"])["d1"].gold["answers"] == ["France"]  # dev only: the train file is not read


def test_hub_failure_names_the_dataset(tmp_path, monkeypatch):
    from pada.tasks import hub

    def unreachable(repo, config, split):
        raise hub.HubUnavailable("cannot reach huggingface.co: Name or service not known")

    monkeypatch.setattr(hub, "_load", unreachable)
    with pytest.raises(TaskError) as err:
        get_task("hellaswag", tmp_path).pools()
    assert "Rowan/hellaswag" in str(err.value) and "cannot reach huggingface.co" in str(err.value)
    assert str(tmp_path / "hellaswag" / "hellaswag_val.jsonl") in str(err.value)
