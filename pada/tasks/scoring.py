"""Answer extraction and scoring shared by the tasks.

Instruct models rarely answer in the exact shape of the reference, so every
scorer first *extracts* the part that matters (an option letter, a final
number, a span, a program) and then compares it with the gold answer. The
extracted value is returned in `Score.extracted` so a human (or the error
analysis LLM) can see what the scorer read.

- multiple choice: `extract_choice` -> option letter: an answer that is
  exactly one option's text, then explicit labels ("B) ...", "The answer is
  B", "(B)", "Option B"), then an option's text inside the answer, then a
  lone capital letter (never the article "A" in "A plant needs ...").
- numbers (GSM8K): `extract_number` -> the `####` marker, else an
  "answer is ..." phrase or a \\boxed{}, else the last number; compared
  numerically so `1,000`, `$1000.00` and `1000` are equal.
- spans (SQuAD): the official SQuAD v1.1 `normalize_answer`, exact match and
  Counter-based F1, max over the gold answers.
- code: `candidate_code` (first ```python fence; a full function keeps the
  stub's imports and helpers, a body is appended to the stub) + the task's
  tests -> a trusted tester and an untrusted worker in `pada.sandbox`; pass@1 is
  the tester's token (`pada.tasks.code_harness`).
"""

from __future__ import annotations

import ast
import re
import string
from collections import Counter
from decimal import Decimal, InvalidOperation

from pada.records import Score

LETTERS = "ABCDEFGHIJ"

# --------------------------------------------------------------------------- multiple choice

# Keyword-led answers: "The answer is B", "Answer: (b)", "correct option is C", "I choose D".
_KEYWORD = (r"(?:answer|option|choice|choose|chose|pick|select)"
            r"(?:\s+(?:is|would\s+be|should\s+be|will\s+be|=))?"
            r"(?:\s+(?:option|choice|letter))?")
# The letter right after the keyword, either case ("answer is c because ..."); an "a"/"A" followed
# by an ordinary word is the article, not a label (see _is_article_a).
_KEYWORD_PATTERN = re.compile(r"(?i:\b" + _KEYWORD + r")\s*[:\-–]?\s*[\(\[]?([A-Ja-j])(?![\w'’{])")
# After the nouns "option" / "choice" a single letter of either case is a label ("option c is right").
_OPTION_NOUN = re.compile(r"(?i:\b(?:option|choice|letter))\s*[:\-–#]?\s*[\(\[]?([A-Ja-j])(?![\w'’{])")
# A label at the very start: "B", "B)", "(B)", "B.", "B:", "b)", "(b)".
_LEADING = re.compile(r"^\s*(?:[\(\[]([A-Ja-j])[\)\]]|([A-J])(?:[\)\]\.:,]|\s*$|\s+[-–—]\s)|([a-j])(?:[\)\]\.:]|\s*$))")
_PAREN_ANYWHERE = re.compile(r"[\(\[]([A-J])[\)\]]")
_LONE_UPPER = re.compile(r"(?<![\w'’{])([A-J])(?![\w'’{])")


def _clean_markup(text: str) -> str:
    """Drop markdown emphasis and surrounding quotes that hide a letter (`**B**`, `` `B` ``)."""
    text = re.sub(r"[*`]+", "", text)
    return text.strip().strip("\"'“”‘’").strip()


def _first_group(match: re.Match | None) -> str | None:
    if not match:
        return None
    return next((g for g in match.groups() if g), None)


def _norm_option_text(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _strip_wrappers(text: str) -> str:
    """Spacing and wrappers only (markdown, quotes, a final period): keeps `+3` apart from `-3`, `Rr` from `rr`."""
    text = " ".join(text.split())
    text = re.sub(r"^[*`\"'“”‘’]+|[*`\"'“”‘’]+$", "", text).strip()
    return text[:-1].rstrip() if text.endswith(".") else text


def _light_norm(text: str) -> str:
    return _strip_wrappers(text).lower()


def _match_option_text(raw: str, text: str, options: list[str], letters: str) -> str | None:
    """The option whose text the answer repeats.

    Exact text first (light normalisation on the raw answer, so formulas like
    `H_{2}O` and signs survive), then, ignoring punctuation, an exact match
    that only one option has, then the longest option the answer contains.
    """
    said_light = _light_norm(raw)
    light = [_light_norm(o) for o in options]
    if light.count(said_light) == 1:
        return letters[light.index(said_light)]
    contained = (_longest_contained(_strip_wrappers(raw), [_strip_wrappers(o) for o in options], letters)
                 or _longest_contained(said_light, light, letters))
    if contained:
        return contained
    said = _norm_option_text(text)
    if not said:
        return None
    normed = [_norm_option_text(o) for o in options]
    if normed.count(said) == 1:
        return letters[normed.index(said)]
    return _longest_contained(said, normed, letters)


def _longest_contained(said: str, options: list[str], letters: str) -> str | None:
    """The longest option text found in the answer as a whole phrase (None when two tie)."""
    contained = sorted(((len(opt), letter) for letter, opt in zip(letters, options)
                        if opt and re.search(r"(?<!\w)" + re.escape(opt) + r"(?!\w)", said)), reverse=True)
    if contained and (len(contained) == 1 or contained[0][0] > contained[1][0]):
        return contained[0][1]
    return None


_CONNECTORS = {"because", "since", "as", "and", "is", "was", "which", "for", "with", "from", "in", "on",
               "that", "but", "so", "or", "here", "seems", "looks", "would", "should", "best", "correct"}


def _is_article_a(text: str, pos: int, options: list[str] | None) -> bool:
    """True when the "A"/"a" at `pos` is the English article ("A plant needs ...", "is a dry one").

    It is an article when a word follows on the same line, unless the words
    after it repeat option A's text ("A dry palms") or are a connector
    ("A because ...").
    """
    rest = text[pos + 1:]
    if not re.match(r"[ \t]+[A-Za-z0-9]", rest):
        return False
    following = _norm_option_text(rest)
    if options and options[0] and following.startswith(_norm_option_text(options[0])):
        return False  # "A dry palms": label A, then option A's text
    tail = _norm_option_text(text[pos:])
    for option in options or []:
        normed = _norm_option_text(option)
        if normed and (tail.startswith(normed) or normed.startswith(tail)):
            return True  # the answer repeats an option that itself starts with "A ..."
    return following.split()[0] not in _CONNECTORS


def extract_choice(prediction: str, n_options: int, options: list[str] | None = None,
                   numeric_labels: bool = False) -> str | None:
    """The option letter (A, B, ...) a free-text answer chose, or None.

    Order: the exact text of one option, a label opening the answer ("B",
    "B) text", "(B)", "b."), a keyword-led label ("The answer is B",
    "Answer: (b)", "Option C"), a single parenthesised capital anywhere, the
    text of an option the answer contains, and last a single lone capital
    letter (never the article "A"). `numeric_labels`: the question's own
    labels are 1..n (some ARC items), so "2" or "(2)" also means option B.
    """
    letters = LETTERS[:n_options]
    if options:  # the answer is exactly one option's text ("H_{2}O", "mass of -3.", "Rr"): nothing else to read
        for norm in (_strip_wrappers, _light_norm):
            said, texts = norm(prediction or ""), [norm(o) for o in options]
            if said and texts.count(said) == 1:
                return letters[texts.index(said)]
    text = _clean_markup(prediction or "")
    if not text:
        return None
    if numeric_labels:
        text = _numeric_to_letter(text, n_options)
    lead = _LEADING.match(text)
    found = _first_group(lead)
    if found and found.upper() in letters and not (found == "A" and _is_article_a(text, _group_start(lead), options)):
        return found.upper()
    for pattern in (_KEYWORD_PATTERN, _OPTION_NOUN):
        for match in pattern.finditer(text):
            found = match.group(1)
            if found.upper() in letters and not (found in "aA" and _is_article_a(text, match.start(1), options)):
                return found.upper()
    paren = {m.group(1) for m in _PAREN_ANYWHERE.finditer(text) if m.group(1) in letters}
    if len(paren) == 1:
        return paren.pop()
    if options:
        by_text = _match_option_text(prediction, text, options, letters)
        if by_text:
            return by_text
    lone = {m.group(1) for m in _LONE_UPPER.finditer(text)
            if m.group(1) in letters and not (m.group(1) == "A" and _is_article_a(text, m.start(1), options))}
    if len(lone) == 1:
        return lone.pop()
    return None


def _group_start(match: re.Match) -> int:
    """Where the first matched group of `match` starts."""
    return next(match.start(i) for i in range(1, len(match.groups()) + 1) if match.group(i))


def _numeric_to_letter(text: str, n_options: int) -> str:
    """Rewrite labels written as digits ("2", "(2)", "answer is 2", "Option 2") to letters."""
    def to_letter(match: re.Match) -> str:
        digit = int(match.group(2))
        if 1 <= digit <= n_options:
            return match.group(1) + LETTERS[digit - 1] + match.group(3)
        return match.group(0)

    text = re.sub(r"^(\s*[\(\[]?)(\d)([\)\]\.:]?\s*$)", to_letter, text)
    text = re.sub(r"^(\s*[\(\[]?)(\d)([\)\]\.:](?:\s|$))", to_letter, text)
    text = re.sub(r"((?i:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*[\(\[]?)(\d)((?!\d))", to_letter, text)
    return re.sub(r"([\(\[])(\d)([\)\]])", to_letter, text)


def score_choice(prediction: str, gold_label: str, options: list[str] | None,
                 numeric_labels: bool = False) -> Score:
    n_options = len(options) if options else max(LETTERS.index(gold_label) + 1, 5)
    chosen = extract_choice(prediction, n_options, options, numeric_labels)
    return Score(correct=chosen == gold_label, extracted=chosen)


def mc_prompt(question: str, options: list[str]) -> str:
    lines = [question.strip(), ""]
    lines += [f"{LETTERS[i]}. {opt.strip()}" for i, opt in enumerate(options)]
    lines += ["", "Answer with the letter of the correct option."]
    return "\n".join(lines)


def mc_answer(label: str) -> str:
    return f"The answer is {label}."


# --------------------------------------------------------------------------- numbers

# 1,234,567 (thousands groups) or plain digits, optional decimals; sign and $ handled around it.
_NUMBER = re.compile(r"(?<![\w.])([-−–]?)\s?\$?\s?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?![\d])")
_ANSWER_PHRASE = re.compile(
    r"(?i:answer\s*(?:is\s*:?|=|:))\s*"
    r"((?:[-−–]\s?)?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def parse_number(text: str) -> Decimal | None:
    """`1,000` / `$1000.00` / `-5` / `18.` / `75%` -> Decimal; None when there is no number."""
    match = _NUMBER.search(text or "")
    if not match:
        return None
    sign, digits = match.group(1), match.group(2).replace(",", "")
    try:
        value = Decimal(digits)
    except InvalidOperation:
        return None
    return -value if sign else value


def _last_number(text: str) -> Decimal | None:
    matches = list(_NUMBER.finditer(text))
    return parse_number(matches[-1].group(0)) if matches else None


def extract_number(prediction: str) -> Decimal | None:
    """The final numeric answer in a worked solution.

    Precedence: the last `#### n` marker (GSM8K's own format), a `\\boxed{n}`,
    an "answer is n" / "Answer: n" phrase (the last one), then the last number
    in the text.
    """
    text = (prediction or "").replace("**", "")
    if "####" in text:
        value = parse_number(text.rsplit("####", 1)[1])
        if value is not None:
            return value
    boxed = _BOXED.findall(text)
    if boxed:
        value = parse_number(boxed[-1])
        if value is not None:
            return value
    phrases = _ANSWER_PHRASE.findall(text)
    if phrases:
        value = parse_number(phrases[-1])
        if value is not None:
            return value
    return _last_number(text)


def format_number(value: Decimal | None) -> str | None:
    """Canonical text for a number: `18.00` -> `18`, `1,000` -> `1000`, `0.50` -> `0.5`."""
    if value is None:
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def score_number(prediction: str, gold: str) -> Score:
    gold_value = Decimal(gold)
    found = extract_number(prediction)
    correct = found is not None and abs(found - gold_value) <= Decimal("1e-6")
    return Score(correct=correct, extracted=format_number(found))


# --------------------------------------------------------------------------- SQuAD v1.1 (official)

def normalize_answer(s: str) -> str:
    """Official SQuAD v1.1 normalisation: lower, drop punctuation, drop a/an/the, fix whitespace."""
    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def squad_f1(prediction: str, ground_truth: str) -> float:
    """Official SQuAD v1.1 token F1 (Counter overlap of normalised tokens)."""
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def squad_exact_match(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


_SPAN_PREFIX = re.compile(r"^\s*(?:(?:the\s+)?(?:final\s+|short\s+)?answer\s*(?:is|:)\s*:?|a:)\s*", re.IGNORECASE)


def extract_span(prediction: str) -> str:
    """The answer span an instruct model gave: first non-empty line, without an "Answer:" lead-in.

    The official script compares the raw prediction; we only strip these
    wrappers (which the official normalisation cannot remove) and keep
    everything else, so the SQuAD normalisation still decides. A lone
    "Answer:" line is skipped ("Answer:\nDenver Broncos").
    """
    for line in (prediction or "").splitlines():
        span = _SPAN_PREFIX.sub("", line.replace("**", "")).strip()
        if span:
            return span
    return ""


def score_span(prediction: str, answers: list[str]) -> Score:
    """Exact match (the headline) and F1, each the max over the gold answers."""
    span = extract_span(prediction)
    em = max(float(squad_exact_match(span, gold)) for gold in answers)
    f1 = max(squad_f1(span, gold) for gold in answers)
    return Score(correct=em == 1.0, extracted=span, metrics={"exact_match": em, "f1": f1})


# --------------------------------------------------------------------------- code

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(candidate: str) -> str:
    """The program text in an answer: the first ```python fence (else the first fence), else the text."""
    text = (candidate or "").replace("\r\n", "\n")
    fences = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    for lang, body in fences:
        if lang in ("python", "py", "python3"):
            return body
    for lang, body in fences:
        if lang == "":
            return body
    return text


def defines(code: str, entry_point: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) is not None


def stub_preamble(stub: str, entry_point: str) -> str:
    """What a task's stub holds before the entry point's `def`: imports and helper functions."""
    try:
        tree = ast.parse(stub)
    except SyntaxError:
        return ""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == entry_point:
            first_line = min([node.lineno] + [d.lineno for d in node.decorator_list])
            return "".join(stub.splitlines(keepends=True)[:first_line - 1])
    return ""


def _indent_body(completion: str) -> str:
    """A body written flush-left (common after a chat template) gets the 4-space indent it needs."""
    lines = completion.split("\n")
    first = next((line for line in lines if line.strip()), "")
    if first and not first[0].isspace():
        return "\n".join(("    " + line) if line.strip() else line for line in lines)
    return completion


def candidate_code(candidate: str, stub: str, entry_point: str) -> str:
    """Full code for a candidate: a full function keeps the stub's imports/helpers; a body is appended to the stub."""
    code = extract_code(candidate)
    if defines(code, entry_point):
        return stub_preamble(stub, entry_point) + code
    return stub + _indent_body(code)


def run_program(code: str, tests: str, setup: str = "", preamble: str = "", entry_point: str = "",
                timeout_s: float = 10.0, allow_unsandboxed: bool = False) -> Score:
    """pass@1 of `code` against `tests`, judged by the trusted tester (see pada.tasks.code_harness).

    `code` and `setup` load in the untrusted worker; `preamble` (the prompt's own imports and
    helpers) and `tests` run in the tester. A pass is only the tester's token, never an exit status.
    """
    from pada.sandbox import run_checked
    from pada.tasks import code_harness

    result = run_checked(code_harness.program("tester", preamble=preamble, tests=tests, entry_point=entry_point),
                         code_harness.program("worker", code=code, setup=setup),
                         timeout_s=timeout_s, allow_unsandboxed=allow_unsandboxed)
    if result.passed:
        return Score(correct=True)
    if result.timed_out:
        return Score(correct=False, detail=f"timed out after {timeout_s:g} s")
    tester, worker = result.tester, result.worker
    # The tester's error (an assert, CandidateGone), then the worker's (its traceback, say a SyntaxError).
    detail = "\n".join(part.strip()[-400:] for part in (tester.stderr, worker.stderr) if part.strip())
    return Score(correct=False, detail=detail or tester.stdout.strip()[-800:] or f"exit code {tester.returncode}")


def score_code(prediction: str, gold: dict, timeout_s: float, allow_unsandboxed: bool) -> Score:
    """pass@1 for one candidate against the example's tests.

    Worker: the candidate's code, then test_setup_code (MBPP's setups build objects of classes
    the code defines: `root = Node(1)` in 367 and 927). Tester: the stub's preamble, then the
    test_list asserts (MBPP) and the test plus `check(entry_point)` when the test defines
    check() (HumanEval).
    """
    entry_point = gold.get("entry_point") or ""
    stub = gold.get("stub") or ""
    code = candidate_code(prediction, stub, entry_point) if entry_point else extract_code(prediction)
    test = gold.get("test") or ""
    parts = ["\n".join(gold.get("test_list") or []), test]
    if entry_point and re.search(r"^def check\(", test, re.MULTILINE):
        parts.append(f"check({entry_point})")
    tests = "\n\n".join(part for part in parts if part.strip()) + "\n"
    preamble = stub_preamble(stub, entry_point) if entry_point else ""
    score = run_program(code, tests, setup=gold.get("test_setup_code") or "", preamble=preamble,
                        entry_point=entry_point, timeout_s=timeout_s, allow_unsandboxed=allow_unsandboxed)
    score.extracted = code
    return score
