"""Answer extraction and scoring with the awkward answers instruct models really give."""

import re
import string
from collections import Counter

import pytest

from pada.records import Example
from pada.tasks import scoring
from pada.tasks.code import HumanEval
from pada.tasks.scoring import extract_choice, extract_number, format_number, normalize_answer, squad_f1

OPTIONS = ["dry palms", "wet palms", "palms covered with oil", "palms covered with lotion"]


# ----------------------------------------------------------------------------- multiple choice

@pytest.mark.parametrize("answer, expected", [
    ("B", "B"), ("b", "B"), ("(B)", "B"), ("(b)", "B"), ("[C]", "C"), ("B.", "B"), ("B:", "B"),
    ("B) wet palms", "B"), ("b) wet palms", "B"), ("B. wet palms", "B"), ("B - wet palms", "B"),
    ("The answer is B.", "B"), ("The answer is (B).", "B"), ("The answer is b", "B"),
    ("The correct answer is: C", "C"), ("Answer: D", "D"), ("answer: d", "D"), ("ANSWER: C", "C"),
    ("**B**", "B"), ("**Answer: C**", "C"), ("The answer is **D**.", "D"), ("`B`", "B"), ('"B"', "B"),
    ("Option B", "B"), ("option c is correct", "C"), ("The correct option is D", "D"),
    ("I choose C.", "C"), ("I would pick (d).", "D"), ("Choice: A", "A"),
    ("wet palms", "B"), ("Palms covered with oil.", "C"), ("The best choice is palms covered with lotion", "D"),
    ("dry palms, because friction makes heat", "A"),
    ("A", "A"), ("A.", "A"), ("A) dry palms", "A"), ("A dry palms", "A"), ("The answer is A because it is dry", "A"),
    ("  \n B \n", "B"), ("B\n\nExplanation: wet skin ...", "B"),
    ("Rubbing dry hands creates friction, so the answer is A.", "A"),
    ("A plant needs water, so the answer is C", "C"),
    ("I think it is C, since oil changes friction.", "C"),
    ("the answer is c because oil is slippery", "C"), ("the answer is a because dry skin rubs", "A"),
    ("Answer:\nB", "B"), ("B is correct.", "B"), ("It's (D).", "D"), ("The answer I think is B", "B"),
    ("The answer is: (B) wet palms", "B"), ("Correct answer - C", "C"), ("The answer is C. A is wrong.", "C"),
])
def test_choice_extraction(answer, expected):
    assert extract_choice(answer, 4, OPTIONS) == expected


@pytest.mark.parametrize("answer", [
    "", "   ", "A plant needs sunlight to grow.", "None of these.", "B and C are both possible",
    "The answer is a dry one", "The answer is a plant.", "I don't know", "A is wrong, B is wrong, C is right", "E",  # E is not an option of a 4-option question
])
def test_choice_no_false_hits(answer):
    assert extract_choice(answer, 4, OPTIONS) is None


def test_option_text_prefers_the_longest_contained_option():
    options = ["palms", "dry palms", "wet feet", "oil"]
    assert extract_choice("Dry palms.", 4, options) == "B"


def test_article_option_text_is_not_read_as_letter_a():
    options = ["It melts.", "A puddle forms.", "It freezes.", "Nothing happens."]
    assert extract_choice("A puddle forms.", 4, options) == "B"


def test_arc_numeric_labels_accept_digit_and_letter():
    gold = {"label": "B", "options": OPTIONS, "numeric_labels": True}
    example = Example(id="x", task="arc_challenge", source_split="test", prompt="q", answer="The answer is B.",
                      gold=gold)
    from pada.tasks.arc import ArcChallenge
    task = ArcChallenge.__new__(ArcChallenge)
    for answer in ["2", "(2)", "2.", "The answer is 2.", "Answer: 2", "Option 2", "B", "The answer is B."]:
        assert task.score(example, answer).correct, answer
        assert task.score(example, answer).extracted == "B"
    for answer in ["3", "The answer is 1", "C"]:
        assert not task.score(example, answer).correct, answer


def test_digits_are_not_labels_for_letter_questions():
    assert extract_choice("2", 4, OPTIONS) is None


def test_score_choice_reports_extracted_letter():
    score = scoring.score_choice("**(c)** palms covered with oil", "C", OPTIONS)
    assert score.correct and score.extracted == "C"
    score = scoring.score_choice("I'm not sure", "C", OPTIONS)
    assert not score.correct and score.extracted is None


# ----------------------------------------------------------------------------- numbers (GSM8K)

@pytest.mark.parametrize("answer, expected", [
    ("#### 72", "72"), ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72"),
    ("#### 1,000", "1000"), ("The answer is 1,000.", "1000"), ("The answer is $1,000.00.", "1000"),
    ("$18.00", "18"), ("18.", "18"), ("18.00", "18"), ("0.50", "0.5"), (".5", "0.5"),
    ("-5", "-5"), ("The temperature dropped to -12 degrees.", "-12"), ("Answer: −3", "-3"),
    ("So 75%.", "75"), ("The answer is 75%", "75"), ("$ 18", "18"),
    ("She buys 3 apples and 4 pears, so 7 fruits in all.", "7"),
    ("#### 18\nThe answer is 20", "18"),  # the #### marker takes precedence
    ("The answer is 18. Check: 18 + 2 = 20", "18"),  # an explicit answer phrase beats the last number
    ("\\boxed{42}", "42"), ("The final answer is \\boxed{1,234}.", "1234"),
    ("The answer is: **72**", "72"), ("**Final answer: 5**", "5"),
    ("To answer 5 questions she needs 2 hours each, so 10 hours.", "10"),
    ("The final answer is 12 cookies.", "12"), ("Answer = 9", "9"),
    ("1,234,567 people", "1234567"), ("1, 2, 3", "3"), ("5-3=2", "2"),
    ("It costs 12 dollars per hour; 12*5 = 60\nSo he earns 60 dollars.", "60"),
])
def test_number_extraction(answer, expected):
    assert format_number(extract_number(answer)) == expected


@pytest.mark.parametrize("answer", ["", "no number here", "####", "The answer is unknown."])
def test_number_extraction_none(answer):
    assert extract_number(answer) is None


@pytest.mark.parametrize("prediction, gold, correct", [
    ("18.0", "18", True), ("#### 18.00", "18", True), ("1,000", "1000", True), ("$1000", "1000", True),
    ("18.5", "18", False), ("-5", "5", False), ("5", "-5", False), ("0.5", "0.50", True),
    ("The answer is 3.", "3", True), ("nothing", "3", False),
])
def test_score_number(prediction, gold, correct):
    assert scoring.score_number(prediction, gold).correct is correct


# ----------------------------------------------------------------------------- SQuAD v1.1

def official_normalize_answer(s):
    """Verbatim from the official SQuAD v1.1 evaluate script (the oracle)."""
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def official_f1_score(prediction, ground_truth):
    prediction_tokens = official_normalize_answer(prediction).split()
    ground_truth_tokens = official_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


SQUAD_STRINGS = [
    "The Denver Broncos!", "Denver Broncos", "an apple a day", "theater", "The the THE", "A-B", "AT&T",
    "  multiple   spaces\tand\nlines ", "3–10", "Sagres, Portugal.", "the 'Big Apple'", "U.S.", "US",
    "Saint Bernadette Soubirous", "Bernadette", "", "!!!", "a", "Anarchy", "annual", "the cat the cat",
    "cat cat dog", "dog cat", "Æsir and the Vanir", "naïve café", "1,000", "1000", "$5 million", "5 million",
]


@pytest.mark.parametrize("text", SQUAD_STRINGS)
def test_squad_normalisation_is_official(text):
    assert normalize_answer(text) == official_normalize_answer(text)


@pytest.mark.parametrize("prediction", SQUAD_STRINGS)
@pytest.mark.parametrize("gold", ["Denver Broncos", "the cat", "cat cat dog", "Saint Bernadette Soubirous", "US"])
def test_squad_f1_is_official(prediction, gold):
    assert squad_f1(prediction, gold) == pytest.approx(official_f1_score(prediction, gold))


@pytest.mark.parametrize("text, normalised", [
    ("The Denver Broncos!", "denver broncos"), ("an apple a day", "apple day"), ("theater", "theater"),
    ("A-B", "ab"), ("3–10", "3–10"), ("  x   y ", "x y"), ("The, the; THE.", ""),
])
def test_squad_normalisation_edge_cases(text, normalised):
    assert normalize_answer(text) == normalised


@pytest.mark.parametrize("prediction, answers, em, f1", [
    ("Denver Broncos", ["Denver Broncos"], 1.0, 1.0),
    ("the Denver Broncos.", ["Denver Broncos"], 1.0, 1.0),
    ("DENVER BRONCOS", ["Denver Broncos"], 1.0, 1.0),
    ("Broncos", ["Denver Broncos"], 0.0, pytest.approx(2 / 3)),
    ("Denver", ["Carolina Panthers", "Denver Broncos"], 0.0, pytest.approx(2 / 3)),
    ("Carolina", ["Denver Broncos", "Carolina"], 1.0, 1.0),  # max over gold answers
    ("The answer is Denver Broncos.", ["Denver Broncos"], 1.0, 1.0),  # wrapper stripped
    ("Answer: Denver Broncos", ["Denver Broncos"], 1.0, 1.0),
    ("**Denver Broncos**", ["Denver Broncos"], 1.0, 1.0),
    ("Denver Broncos\n\nThey beat the Panthers 24–10.", ["Denver Broncos"], 1.0, 1.0),  # first line
    ("Answer:\nDenver Broncos", ["Denver Broncos"], 1.0, 1.0),
    ("  \n\nThe final answer is: the Denver Broncos", ["Denver Broncos"], 1.0, 1.0),
    ("x y y", ["y y z"], 0.0, pytest.approx(2 / 3)),  # Counter overlap, not set overlap
    ("", ["Denver Broncos"], 0.0, 0.0),
    ("Panthers", ["Denver Broncos"], 0.0, 0.0),
])
def test_score_span(prediction, answers, em, f1):
    score = scoring.score_span(prediction, answers)
    assert score.metrics["exact_match"] == em
    assert score.metrics["f1"] == f1
    assert score.correct is (em == 1.0)


# ----------------------------------------------------------------------------- code

STUB = '''from typing import List


def helper(x):
    return x


def add_all(numbers: List[int]) -> int:
    """Sum the numbers.
    >>> add_all([1, 2])
    3
    """
'''
TEST = """

def check(candidate):
    assert candidate([1, 2, 3]) == 6
    assert candidate([]) == 0
"""
GOLD = {"stub": STUB, "entry_point": "add_all", "test": TEST}
FULL = "def add_all(numbers: List[int]) -> int:\n    return sum(helper(n) for n in numbers)\n"


def code_score(prediction, gold=GOLD, timeout_s=10.0):
    return scoring.score_code(prediction, gold, timeout_s=timeout_s, allow_unsandboxed=False)


@pytest.mark.parametrize("candidate", [
    "    return sum(numbers)\n",  # a completion of the prompt (body only)
    "return sum(numbers)",  # a body written flush-left
    FULL,  # a full function that relies on the stub's import and helper
    "```python\n" + FULL + "```",  # fenced
    "Here is the function:\n\n```python\n" + FULL + "```\n\nIt adds the numbers.",  # prose around the fence
    "```python\ndef add_all(numbers):\n    total = 0\n    for n in numbers:\n        total += n\n    return total\n",
    "```\n" + FULL + "```",  # unlabelled fence
    "```py\nimport math\n\ndef add_all(numbers):\n    return math.fsum(numbers)\n```",
    "```text\nnot code\n```\n```python\n" + FULL + "```",  # the python fence wins over another language
])
def test_code_passes(candidate):
    score = code_score(candidate)
    assert score.correct, score.detail
    assert score.detail is None


@pytest.mark.parametrize("candidate, error", [
    ("    return 0\n", "AssertionError"),
    ("```python\ndef add_all(numbers):\n    return sum(numbers) + 1\n```", "AssertionError"),
    ("```python\ndef add_all(numbers)\n    return sum(numbers)\n```", "SyntaxError"),
    ("```python\ndef something_else(numbers):\n    return sum(numbers)\n```", "Error"),
    ("", "Error"),
])
def test_code_fails_with_error_tail(candidate, error):
    score = code_score(candidate)
    assert not score.correct
    assert error in score.detail


def test_infinite_loop_times_out_as_incorrect():
    score = code_score("```python\ndef add_all(numbers):\n    while True:\n        pass\n```", timeout_s=2)
    assert not score.correct
    assert "timed out" in score.detail


def test_mbpp_program_runs_code_then_setup_then_asserts():
    gold = {"entry_point": "tree_size", "stub": "def tree_size(node):\n    \"\"\"Count nodes.\"\"\"\n",
            "test_setup_code": "root = Node(Node(None, None), None)",
            "test_list": ["assert tree_size(root) == 2", "assert tree_size(None) == 0"]}
    code = ("```python\nclass Node:\n    def __init__(self, left, right):\n        self.left, self.right = left, right\n"
            "def tree_size(node):\n    return 0 if node is None else 1 + tree_size(node.left) + tree_size(node.right)\n```")
    assert code_score(code, gold).correct
    wrong = code.replace("1 + tree_size", "2 + tree_size")
    assert not code_score(wrong, gold).correct


def test_humaneval_task_scores_reference_and_failure(tmp_path):
    task = HumanEval(tmp_path, timeout_s=10)
    example = Example(id="HumanEval/x", task="humaneval", source_split="humaneval", prompt="p",
                      answer="```python\n" + STUB + "    return sum(numbers)\n```", gold=GOLD)
    assert task.score(example, example.answer).correct
    assert not task.score(example, "    return -1\n").correct


def test_extract_code_variants():
    assert scoring.extract_code("```python\nx = 1\n```\n```python\nx = 2\n```") == "x = 1\n"
    assert scoring.extract_code("```python\nx = 1\n") == "x = 1\n"  # cut off by max_new_tokens
    assert scoring.extract_code("    return 1") == "    return 1"
