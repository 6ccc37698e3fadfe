"""TEST STAND-IN: canned, deterministic LLM replies for generation and quality control. Not a model.

`generation_script()` returns `{schema_class_name: handler}` for `doubles.scripted_llm.ScriptedLLM`
(`set_script(...)`), covering pattern- and error-based generation (`GeneratedVariants`),
rephrasing (`Rephrasings`) and the judge (`JudgeScores`, `JudgeScoresWithStrategy`). Each
handler reads the rendered prompt (the "### ..." headings and "[Sample N]" markers of
pada/llm/prompts/{generate_pattern,generate_error,rephrase,quality}.jinja2) and answers with
valid JSON:

- variants: the training example with every number shifted (or, without numbers, a new lead-in
  sentence), its reply shifted the same way, so format and answer style are kept; split into the
  schema's form fields (question / options / answer_letter, or question / solution / final_answer;
  for SQuAD's span form the example's question behind a lead-in, with the example's own span);
- rephrasings: the question behind a different lead-in sentence;
- answers (the QC answer check): a crude reader, not a solver: a SQuAD question is answered with the
  first words of the context sentence sharing most words with it, less the question's own words; a
  multiple-choice question with the letter of the option sharing most words with its stem;
- judge: relevance from whether a sample's reply ends the way the original's does ("#### n",
  "The answer is X."), utility low for a verbatim copy of the original; feedback says why.

Same prompt, same reply; it does not solve anything. Which handler answers is chosen by stage and
schema (`pada_script`), never by the prompt; item counts come from the schema's minItems, so a
reworded template still gets a schema-valid reply, with less plausible content.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable

Handler = Callable[[list[dict], dict | None], str]

_LEAD_INS = ("In a different setting:", "Here is a related case:", "Consider a new situation:",
             "A similar question:", "Now think about this:")
_REPHRASE_LEAD_INS = ("Put differently:", "In other words:", "Rephrased:", "To restate the question:",
                      "Asked another way:")
_NUMBER = re.compile(r"\d+")


def _user_text(messages: list[dict]) -> str:
    return "\n".join(m.get("content", "") for m in messages if m.get("role") == "user")


def _between(text: str, start: str, end: str) -> str:
    match = re.search(re.escape(start) + r"\n(.*?)\n" + re.escape(end), text, re.DOTALL)
    return match.group(1).strip() if match else ""


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _count(schema: dict | None, field: str, text: str) -> int:
    """How many items to return: the schema's minItems, else "Write N" in the prompt, else 1."""
    try:
        return int(schema["properties"][field]["minItems"])
    except (KeyError, TypeError, ValueError):
        match = re.search(r"Write (\d+) ", text)
        return int(match.group(1)) if match else 1


def _shift_numbers(text: str, offset: int) -> str:
    return _NUMBER.sub(lambda m: str(int(m.group()) + offset), text)


def _variant(question: str, answer: str, index: int, salt: int) -> dict:
    offset = 1 + (salt + index) % 9
    if _NUMBER.search(question):
        return {"question": _shift_numbers(question, offset), "answer": _shift_numbers(answer, offset)}
    lead_in = _LEAD_INS[(salt + index) % len(_LEAD_INS)]
    return {"question": f"{lead_in} {question}", "answer": answer}


_OPTION = re.compile(r"^\s*\(?([A-J])[.)]\s+(.*)$", re.MULTILINE)  # forms.OPTION_LINE, capturing the text
_LETTER = re.compile(r"answer is \(?([A-J])\b")


def _as_form(variant: dict, schema: dict | None) -> dict:
    """The variant in the fields of the schema's sample form (pada/tasks/forms.py)."""
    fields = json.dumps(schema or {})
    if "answer_letter" in fields:  # multiple choice: the question above the options, the texts, the letter
        from pada.tasks.forms import choice_stem

        letter = _LETTER.search(variant["answer"])
        stem, _ = choice_stem(variant["question"])
        options = [text.strip() for _, text in _OPTION.findall(variant["question"])]
        return {"question": stem, "options": options or ["yes", "no"], "answer_letter": letter.group(1) if letter else "A"}
    if "final_answer" in fields:  # maths: the solution and the number after '####'
        solution, _, final = variant["answer"].rpartition("####")
        return {"question": variant["question"], "solution": solution.strip() or variant["answer"],
                "final_answer": final.strip() or "0"}
    return variant


def variants_reply(messages: list[dict], schema: dict | None = None) -> str:
    """`GeneratedVariants` for the pattern and error prompts, in the fields of the schema's form."""
    text = _user_text(messages)
    question = _between(text, "### User message", "### ")
    answer = (_between(text, "### Assistant reply", "### End of example")
              or _between(text, "### Correct assistant reply", "### The model's wrong reply"))
    salt = _digest(text)  # feedback in a regeneration prompt changes the variants
    n = _count(schema, "variants", text)
    if "SpanItem" in json.dumps(schema or {}):  # SQuAD: a question about the same context, answered by a span
        from pada.tasks.forms import span_parts

        parts = span_parts(question)
        asked = parts[1] if parts else question
        return json.dumps({"variants": [{"question": f"{_LEAD_INS[(salt + i) % len(_LEAD_INS)]} {asked}",
                                         "answer": answer} for i in range(n)]})
    return json.dumps({"variants": [_as_form(_variant(question, answer, i, salt), schema) for i in range(n)]})


def rephrasings_reply(messages: list[dict], schema: dict | None = None) -> str:
    """`Rephrasings` for the rephrase prompt."""
    text = _user_text(messages)
    question = _between(text, "Question:", "### End of question")
    salt = _digest(text)
    n = _count(schema, "rephrasings", text)
    return json.dumps({"rephrasings": [f"{_REPHRASE_LEAD_INS[(salt + i) % len(_REPHRASE_LEAD_INS)]} {question}"
                                       for i in range(n)]})


_SAMPLE = re.compile(r"^\[Sample (\d+)\]\nUser: (.*?)\nAssistant: (.*?)(?=\n\[Sample \d+\]|\nScore every sample|\Z)",
                     re.DOTALL | re.MULTILINE)


def _ending(answer: str) -> str:
    """The shape of a reply's last line: digits -> 0, a lone option letter -> X."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return re.sub(r"\b[A-E]\b", "X", _NUMBER.sub("0", last))


def _has_marker(answer: str) -> bool:
    return "####" in answer or "answer is" in answer.lower()


def _judge_item(index: int, question: str, answer: str, original_q: str, original_a: str,
                with_strategy: bool) -> dict:
    same_style = (_ending(answer) == _ending(original_a)) if _has_marker(original_a) else \
        (0.3 <= (len(answer) + 1) / (len(original_a) + 1) <= 3.0)
    is_copy = " ".join(question.split()) == " ".join(original_q.split())
    relevance = 9 if same_style else 4
    utility = 3 if is_copy else 8
    notes = []
    if not same_style:
        notes.append("the reply does not end the way the original's does")
    if is_copy:
        notes.append("the question copies the original")
    item = {"sample_idx": index, "feedback": "; ".join(notes) or "keeps the format and changes the content",
            "utility": utility, "relevance": relevance}
    if with_strategy:
        item["adherence"] = 8
    return item


def judge_reply(messages: list[dict], schema: dict | None = None) -> str:
    """`JudgeScores` / `JudgeScoresWithStrategy`: one item per "[Sample N]" block of the quality prompt."""
    text = _user_text(messages)
    original_q = _between(text, "### User message", "### Assistant reply")
    original_a = _between(text, "### Assistant reply", "### End of original")
    with_strategy = ("adherence" in json.dumps(schema)) if schema else "asked to follow this strategy" in text
    items = [_judge_item(int(idx), q.strip(), a.strip(), original_q, original_a, with_strategy)
             for idx, q, a in _SAMPLE.findall(text)]
    try:
        wanted = int(schema["properties"]["scores"]["minItems"])
    except (KeyError, TypeError, ValueError):
        wanted = len(items)
    seen = {item["sample_idx"] for item in items}
    spare = [n for n in range(1, 10 * wanted + 1) if n not in seen]  # the layout was not recognised
    items += [_judge_item(n, "", "", original_q, original_a, with_strategy) for n in spare[: wanted - len(items)]]
    return json.dumps({"scores": items})


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"\w+", text)}


def _read_answer(context: str, question: str) -> str:
    """The crude reader: see the module docstring."""
    options = _OPTION.findall(question)
    if options:
        from pada.tasks.forms import choice_stem

        stem = _words(choice_stem(question)[0])
        return max(options, key=lambda option: len(_words(option[1]) & stem))[0]
    asked = _words(question)
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", context) if s.strip()] or [""]
    best = max(sentences, key=lambda sentence: len(_words(sentence) & asked))
    return " ".join([w for w in best.split() if w.lower().strip(".,;:!?") not in asked][:4]).strip(".,;:!?")


_QUESTION_BLOCK = re.compile(r"^\[Question (\d+)\]\n(.*?)(?=\n\[Question \d+\]|\nReturn \"answers\"|\Z)",
                             re.DOTALL | re.MULTILINE)


def answers_reply(messages: list[dict], schema: dict | None = None) -> str:
    """`JudgeAnswers` for the answer-check prompt: one item per "[Question N]" block."""
    text = _user_text(messages)
    shared = re.match(r"Context: (.*?)\n\nAnswer each question", text, re.DOTALL)  # one context per call
    context = shared.group(1) if shared else ""
    items = [{"sample_idx": int(index), "answer": _read_answer(context, question) or "unknown"}
             for index, question in _QUESTION_BLOCK.findall(text)]
    return json.dumps({"answers": items})


def generation_script() -> dict[str, Handler]:
    """Handlers for every schema of pada.agents.generation and pada.agents.quality."""
    return {"GeneratedVariants": variants_reply, "Rephrasings": rephrasings_reply,
            "JudgeScores": judge_reply, "JudgeScoresWithStrategy": judge_reply, "JudgeAnswers": answers_reply}
