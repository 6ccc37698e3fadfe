"""`python -m pada tasks` and `python -m pada score`, run as a user would (subprocess)."""

import json
import os
import subprocess
import sys

import pytest

from pada.paths import REPO_ROOT, data_dir

HAVE_DATA = (data_dir() / "gsm8k").is_dir()
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="benchmark data not available")


def pada(*args, env=None):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "pada", *map(str, args)], cwd=REPO_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=300)


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ----------------------------------------------------------------------------- tasks

@needs_data
def test_tasks_lists_every_task_with_sizes():
    result = pada("tasks")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["task", "metric"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"arc_challenge", "gsm8k", "hellaswag", "squad", "humaneval"}
    assert rows["arc_challenge"][1:] == ["accuracy", "1119", "300/600/1000", "299", "500/1172"]
    assert rows["humaneval"][1:] == ["pass@1", "474", "300/474/474", "500", "164/164"]
    assert rows["squad"][1] == "exact_match"


def test_tasks_json_with_small_data_dir_and_custom(tmp_path):
    root = tmp_path / "data"
    for split, n in (("Train", 4), ("Dev", 2), ("Test", 3)):
        (root / "arc_challenge").mkdir(parents=True, exist_ok=True)
        write_jsonl(root / "arc_challenge" / f"ARC-Challenge-{split}.jsonl", [
            {"id": f"{split}{i}", "question": {"stem": "Q?", "choices": [{"text": "x", "label": "A"},
                                                                         {"text": "y", "label": "B"}]},
             "answerKey": "B"} for i in range(n)])
    custom = write_jsonl(tmp_path / "mine.jsonl", [{"input": f"{i}+1?", "answer": str(i + 1)} for i in range(10)])
    result = pada("tasks", "--data-dir", root, "--json", "--custom", custom, "--scorer", "number")
    # the other benchmarks are missing from this data dir: listed as errors, exit 2
    assert result.returncode == 2 and "Traceback" not in result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0] == {"task": "arc_challenge", "title": "ARC-Challenge", "metric": "accuracy", "train_pool": 4,
                       "train_subsets": [4, 4, 4], "validation": 2, "validation_pool": 2, "test": 3, "test_all": 3}
    assert rows[1]["task"] == f"custom:{custom}" and rows[1]["train_pool"] == 6
    assert "gsm8k" in result.stderr and str(root / "gsm8k" / "train.jsonl") in result.stderr


def test_tasks_missing_data_dir_is_one_line(tmp_path):
    missing = tmp_path / "nowhere"
    result = pada("tasks", "--data-dir", missing)
    assert_one_line_error(result, str(missing), "--data-dir", "PADA_DATA_DIR")


def test_tasks_missing_data_dir_from_environment(tmp_path):
    missing = tmp_path / "gone"
    result = pada("tasks", env={"PADA_DATA_DIR": str(missing)})
    assert_one_line_error(result, str(missing))


# ----------------------------------------------------------------------------- score

@needs_data
def test_score_gsm8k_writes_lines_and_summary(tmp_path):
    predictions = write_jsonl(tmp_path / "p.jsonl", [
        {"id": "test-0", "prediction": "16 - 3 - 4 = 9 eggs; 9 * $2 = $18.\n#### 18"},
        {"id": "train-0", "prediction": "She sold 70 clips."},
    ])
    out = tmp_path / "out" / "scored.jsonl"
    result = pada("score", "--task", "gsm8k", "--predictions", predictions, "--out", out)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary == {"task": "gsm8k", "n": 2, "correct": 1, "accuracy": 0.5}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [{"id": "test-0", "correct": True, "extracted": "18"},
                     {"id": "train-0", "correct": False, "extracted": "70"}]
    again = write_jsonl(tmp_path / "p2.jsonl", [{"id": "test-0", "prediction": "The answer is $18.00."}])
    result = pada("score", "--task", "gsm8k", "--predictions", again)
    assert json.loads(result.stdout.strip().splitlines()[-1])["correct"] == 1


@needs_data
def test_score_squad_reports_exact_match_and_f1(tmp_path):
    predictions = write_jsonl(tmp_path / "p.jsonl", [
        {"id": "56be4db0acb8001400a502ec", "prediction": "The Denver Broncos."},
        {"id": "56be4db0acb8001400a502ed", "prediction": "Panthers"},
    ])
    result = pada("score", "--task", "squad", "--predictions", predictions)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["n"] == 2 and summary["correct"] == 1 and summary["exact_match"] == 0.5
    assert summary["f1"] == pytest.approx((1 + 2 / 3) / 2)


@needs_data
def test_score_arc_and_humaneval(tmp_path):
    arc = write_jsonl(tmp_path / "arc.jsonl", [{"id": "Mercury_SC_415702", "prediction": "**A) dry palms**"},
                                               {"id": "Mercury_SC_409171", "prediction": "(C)"}])
    result = pada("score", "--task", "arc_challenge", "--predictions", arc)
    assert json.loads(result.stdout.strip().splitlines()[-1])["correct"] == 1
    code = write_jsonl(tmp_path / "code.jsonl", [
        {"id": "HumanEval/2", "prediction": "    return number % 1.0\n"},
        {"id": "HumanEval/0", "prediction": "```python\ndef has_close_elements(numbers, threshold):\n"
                                            "    return any(abs(a - b) < threshold for i, a in enumerate(numbers)"
                                            " for b in numbers[i + 1:])\n```"},
        {"id": "HumanEval/1", "prediction": "    while True:\n        pass\n"},
        {"id": "mbpp/601", "prediction": "def max_chain_length(arr, n):\n    return 0\n"},
    ])
    out = tmp_path / "code-out.jsonl"
    result = pada("score", "--task", "humaneval", "--predictions", code, "--out", out, "--timeout", "3")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["correct"] == 2
    assert [json.loads(line)["correct"] for line in out.read_text().splitlines()] == [True, True, False, False]


def test_score_custom_task(tmp_path):
    data = write_jsonl(tmp_path / "mine.jsonl", [{"id": "a", "input": "2+2?", "answer": "4"},
                                                 {"id": "b", "input": "3+3?", "answer": "6"}])
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "prediction": "It is 4."},
                                                     {"id": "b", "prediction": "#### 7"}])
    result = pada("score", "--task", f"custom:{data}", "--scorer", "number", "--predictions", predictions)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"task": "custom", "n": 2, "correct": 1,
                                                                   "accuracy": 0.5}


# ----------------------------------------------------------------------------- score: bad input

def custom_task(tmp_path):
    return write_jsonl(tmp_path / "mine.jsonl", [{"id": "a", "input": "2+2?", "answer": "4"}])


@pytest.mark.parametrize("lines, fragments", [
    (['{"id": "a", "prediction": "4"}', '{"id": "a" "prediction": "4"}'], ["line 2", "not valid JSON"]),
    (['{"id": "a"}'], ["line 1", "field 'prediction'"]),
    (['{"prediction": "4"}'], ["line 1", "field 'id'"]),
    (['{"id": "a", "prediction": 4}'], ["line 1", "field 'prediction'"]),
    (['["a", "4"]'], ["line 1", "JSON object"]),
    (['{"id": "a", "prediction": "4"}', '', '{"id": "zzz", "prediction": "4"}'], ["line 3", "unknown id 'zzz'"]),
])
def test_score_bad_predictions(tmp_path, lines, fragments):
    predictions = write_jsonl(tmp_path / "p.jsonl", lines)
    result = pada("score", "--task", f"custom:{custom_task(tmp_path)}", "--scorer", "number",
                  "--predictions", predictions)
    assert_one_line_error(result, "p.jsonl", *fragments)


def test_score_unknown_task(tmp_path):
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "prediction": "4"}])
    result = pada("score", "--task", "mmlu", "--predictions", predictions)
    assert_one_line_error(result, "unknown task 'mmlu'", "gsm8k", "humaneval")


def test_score_missing_files(tmp_path):
    result = pada("score", "--task", "gsm8k", "--predictions", tmp_path / "none.jsonl")
    assert_one_line_error(result, "none.jsonl")
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"id": "test-0", "prediction": "4"}])
    result = pada("score", "--task", "gsm8k", "--predictions", predictions, "--data-dir", tmp_path / "nowhere")
    assert_one_line_error(result, str(tmp_path / "nowhere"), "--data-dir")


def test_score_malformed_custom_source_line(tmp_path):
    data = write_jsonl(tmp_path / "mine.jsonl", [{"id": "a", "input": "2+2?", "answer": "4"}, {"id": "b"}])
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "prediction": "4"}])
    result = pada("score", "--task", f"custom:{data}", "--predictions", predictions)
    assert_one_line_error(result, "mine.jsonl line 2", "field 'input'")
