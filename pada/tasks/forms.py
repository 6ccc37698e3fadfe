"""Sample forms: the JSON fields a generator writes for one new example of a task.

A small generator asked for a free-form "question" and "answer" often drops the
parts the SLM is scored on (the lettered options of a multiple-choice question,
the `#### n` line of a maths solution). A task's form asks for those parts as
separate schema fields instead (with constrained decoding they cannot be left
out) and assembles the user and assistant turns in code, in exactly the layout
the task's own examples use.

- `FREE_FORM`: "question" + "answer" (span and code tasks, custom JSONL).
- `CHOICE_FORM`: "question" + "options" (texts, no letters) + "answer_letter";
  turns = `scoring.mc_prompt` / `scoring.mc_answer`.
- `NUMBER_FORM`: "question" + "solution" + "final_answer"; the reply is the
  solution followed by `#### <final_answer>`.
- `SPAN_FORM` (SQuAD): "question" + "answer" about the training example's own
  context. The code keeps the context verbatim (the model never copies it),
  writes `span_prompt(context, question)` (the task's layout) and refuses an
  answer that is not a verbatim span of the context (case-sensitive, as SQuAD's
  answers are exact substrings; whitespace runs count as one space): such an
  item is invalid, like one that fails its schema, never repaired.

A form whose `in_context` is set builds its turns from the item *and* the
training example's prompt (`SampleForm.build`); `SampleForm.problem` says why
an item does not fit that prompt (for the span form: the answer is not a span).

Rephrasing (AugGPT) rewrites only `rephrase_target` of a prompt (for
multiple choice the question above the options, which are kept verbatim).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Literal

from pydantic import BaseModel, Field, model_validator

from pada.tasks.scoring import LETTERS, extract_choice, extract_span, mc_answer, mc_prompt, squad_f1

# An option line of a multiple-choice prompt as `scoring.mc_prompt` writes it: "B. text" or "B) text".
OPTION_LINE = re.compile(r"^\s*\(?([A-J])[.)]\s+\S", re.MULTILINE)
MAX_OPTIONS = 5  # ARC has 3-5 options, HellaSwag 4

# Item models. No docstrings: pydantic would put them into the JSON schema the model reads.


class FreeItem(BaseModel):
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)


class ChoiceItem(BaseModel):
    question: str = Field(min_length=1, description="the question text only, without the options")
    options: list[str] = Field(min_length=2, max_length=MAX_OPTIONS,
                               description="the answer options' texts, without letters")
    answer_letter: Literal[tuple(LETTERS[:MAX_OPTIONS])] = Field(  # type: ignore[valid-type]
        description="the letter of the correct option (A = the first option)")

    @model_validator(mode="after")
    def letter_names_an_option(self) -> "ChoiceItem":
        if LETTERS.index(self.answer_letter) >= len(self.options):
            raise ValueError(f"answer_letter {self.answer_letter} but only {len(self.options)} options")
        texts = [" ".join(option.lower().split()).strip(" .)(") for option in self.options]
        if any(not text for text in texts) or len(set(texts)) < len(texts):
            raise ValueError("options must be distinct and non-empty")
        if any(len(text) == 1 and text.upper() in LETTERS for text in texts):
            raise ValueError("options must be the answers' texts, not their letters")
        return self


_NUMBER_TEXT = r"^-?\$?\d[\d,]*(\.\d+)?%?$"


class NumberItem(BaseModel):
    question: str = Field(min_length=1)
    solution: str = Field(min_length=1, description="the worked solution, step by step")
    final_answer: str = Field(pattern=_NUMBER_TEXT, description="the final number only, e.g. 42")


# SQuAD's layout (pada/tasks/squad.py builds every prompt with `span_prompt`).
SPAN_INSTRUCTION = "Answer with a short span copied from the context."
_CONTEXT, _QUESTION = "Context: ", "\n\nQuestion: "
MAX_SPAN_WORDS = 30  # as tasks.common.SPAN_MAX_WORDS: longer replies are explanations, not spans


def span_prompt(context: str, question: str) -> str:
    """A SQuAD prompt: the context paragraph, the question and the instruction line."""
    return f"{_CONTEXT}{context.strip()}{_QUESTION}{question.strip()}\n{SPAN_INSTRUCTION}"


def span_parts(prompt: str) -> tuple[str, str] | None:
    """(context, question) of a prompt `span_prompt` wrote, or None for any other layout."""
    cut = prompt.rfind(_QUESTION)
    if not prompt.startswith(_CONTEXT) or cut < 0:
        return None
    question = prompt[cut + len(_QUESTION):]
    if question.endswith("\n" + SPAN_INSTRUCTION):
        question = question[:-len(SPAN_INSTRUCTION) - 1]
    return prompt[len(_CONTEXT):cut], question.strip()


def is_span(answer: str, context: str) -> bool:
    """`answer` occurs in `context` verbatim (case-sensitive; any whitespace run matches any other)."""
    answer = " ".join(answer.split())
    return bool(answer) and answer in " ".join(context.split())


class SpanItem(BaseModel):
    question: str = Field(min_length=1, description="the new question only, without the context")
    answer: str = Field(min_length=1, max_length=300,
                        description="a short span copied exactly from the context (a few words)")


@dataclass(frozen=True)
class SampleForm:
    """How a generator writes one example of a task, and how it becomes (user turn, assistant reply).

    `in_context`: the item belongs to the training example it was written from (SQuAD: a new question
    about the same context); `turns` then takes (item, that example's prompt), and `check` says why an
    item does not fit it (None: it fits). `content_rule` replaces the generation prompts' "change the
    content" line (a span form keeps the context); `strategy_scope` tells the pattern and strategy writers
    what such a sample can vary at all (a span sample cannot change its paragraph's topic)."""

    name: str
    item: type[BaseModel]
    fields_help: str  # completes "Return "variants": n items, each with ..." in the generation prompts
    turns: Callable[..., tuple[str, str]]
    rephrase_target: Callable[[str], tuple[str, Callable[[str], str]]] = \
        lambda prompt: (prompt, lambda text: text)
    in_context: bool = False
    check: Callable[[BaseModel, str], str | None] | None = None
    content_rule: str = ""
    strategy_scope: str = ""
    # The QC judge's own answer (pada/agents/quality.py, the answer check): how it is told to answer, and
    # whether its answer and a sample's agree. None: answers of this form cannot be compared in code.
    answer_rule: str = ""
    answers_agree: Callable[[str, str], bool] | None = None

    def build(self, item: BaseModel, original_prompt: str) -> tuple[str, str]:
        """(user turn, assistant reply) for a generated item written from `original_prompt`."""
        return self.turns(item, original_prompt) if self.in_context else self.turns(item)

    def problem(self, item: BaseModel, original_prompt: str) -> str | None:
        """Why `item` is invalid for the example it was written from, or None."""
        return self.check(item, original_prompt) if self.check is not None else None

    def new_part(self, prompt: str) -> tuple[str, str]:
        """(what a sample keeps from its example, what it must write anew) of a user turn.

        Repeats and near copies are judged on the new part alone, among prompts that keep the same
        thing: a SQuAD sample keeps its example's context by design, so two prompts on one paragraph
        share most of their words even when their questions have nothing in common."""
        if self.in_context:
            parts = span_parts(prompt)
            if parts is not None:
                return " ".join(parts[0].split()), parts[1]
        return "", prompt


def _free_turns(item: FreeItem) -> tuple[str, str]:
    return item.question.strip(), item.answer.strip()


def _choice_turns(item: ChoiceItem) -> tuple[str, str]:
    options = [re.sub(r"^\s*\(?[A-Ja-j][.)]\s+", "", option).strip() for option in item.options]
    return mc_prompt(item.question, options), mc_answer(item.answer_letter)


def choice_stem(prompt: str) -> tuple[str, Callable[[str], str]]:
    """(the question above the first option line, a function putting a rewritten question back)."""
    first = OPTION_LINE.search(prompt)
    if first is None:
        return prompt, lambda text: text
    options_block = prompt[first.start():].strip("\n")

    def put_back(text: str) -> str:
        written = OPTION_LINE.search(text)  # options the rewriter wrote anyway: the original ones stand
        return f"{text[:written.start()].strip() if written else text.strip()}\n\n{options_block}"

    return prompt[:first.start()].strip(), put_back


def _number_turns(item: NumberItem) -> tuple[str, str]:
    # a generator may end its solution with the marker anyway; keep one
    solution = re.split(r"\n?\s*####", item.solution.strip())[0].strip()
    final = item.final_answer.strip().replace("$", "").rstrip("%")
    return item.question.strip(), f"{solution}\n#### {final}"


def _span_question(text: str) -> str:
    """The question a generator wrote, without a context, "Question:" label or instruction it added anyway."""
    text = text.strip()
    parts = span_parts(text)
    if parts is not None:
        return parts[1]
    if "Question:" in text:
        text = text[text.rfind("Question:") + len("Question:"):]
    return text.replace(SPAN_INSTRUCTION, "").strip()


def _span_check(item: SpanItem, original_prompt: str) -> str | None:
    parts = span_parts(original_prompt)
    if parts is None:
        return "the training example has no SQuAD context to ask about"
    if not _span_question(item.question):
        return "the question is empty"
    words = len(item.answer.split())
    if not words or words > MAX_SPAN_WORDS:
        return f"the answer is not a short span (1 to {MAX_SPAN_WORDS} words)"
    if not is_span(item.answer, parts[0]):
        return "the answer is not a verbatim span of the context"
    return None


def _span_turns(item: SpanItem, original_prompt: str) -> tuple[str, str]:
    problem = _span_check(item, original_prompt)
    if problem:  # callers drop such items first (`SampleForm.problem`); never write a non-span answer
        raise ValueError(problem)
    parts = span_parts(original_prompt)
    return span_prompt(parts[0], _span_question(item.question)), " ".join(item.answer.split())


def span_question(prompt: str) -> tuple[str, Callable[[str], str]]:
    """(the question of a SQuAD prompt, a function putting a rewritten question back under the same context)."""
    parts = span_parts(prompt)
    if parts is None:
        return prompt, lambda text: text
    context, question = parts
    return question, lambda text: span_prompt(context, _span_question(text) or question)


SPAN_AGREEMENT = 0.5  # token F1 at which two spans name the same thing ("Brooklyn" / "in Brooklyn": 0.67)


def spans_agree(answer: str, other: str) -> bool:
    """Two answers to one SQuAD question agree: SQuAD token F1 >= SPAN_AGREEMENT (boundaries may differ)."""
    return squad_f1(extract_span(other), answer) >= SPAN_AGREEMENT


def letters_agree(answer: str, other: str) -> bool:
    """Two multiple-choice answers name the same option letter."""
    mine = extract_choice(answer, len(LETTERS))
    return mine is not None and mine == extract_choice(other, len(LETTERS))


FREE_FORM = SampleForm(
    "free", FreeItem, '"question" (the user message) and "answer" (the assistant reply)', _free_turns)
CHOICE_FORM = SampleForm(
    "choice", ChoiceItem,
    '"question" (the question text only), "options" (the option texts as a list, without letters; the same '
    'number of options as the example) and "answer_letter" (the letter of the correct option: A for the first '
    'option, B for the second, ...). The code adds the letters, the instruction line and the reply "The answer is X."',
    _choice_turns, choice_stem,
    answer_rule="Answer with the letter of the correct option.", answers_agree=letters_agree)
NUMBER_FORM = SampleForm(
    "number", NumberItem,
    '"question" (the problem), "solution" (the worked solution, step by step) and "final_answer" (the final '
    'number only). The code ends the reply with "#### <final_answer>".', _number_turns)
# (No answer check for maths: the judge would have to solve each problem, and how often a small local judge
# gets GSM8K right is not measured here.)
SPAN_FORM = SampleForm(
    "span", SpanItem,
    '"question" (a new question about the example\'s context, without the context itself) and "answer" (the '
    'answer: a short span, a few words, copied exactly from the context, same capitalisation). The code adds the '
    'context and the instruction line; an answer that is not in the context is discarded.',
    _span_turns, span_question, in_context=True, check=_span_check,
    answer_rule=SPAN_INSTRUCTION, answers_agree=spans_agree,
    content_rule="Keep the same context paragraph: ask new questions about other facts in it, each answered by "
                 "a different span of it; do not repeat the example's question.",
    # Measured (quickstart, 1.5B teacher): without this, patterns and strategies named the topics of single
    # failures ("Sicily Language Identification"), the generator then asked about Sicily beside paragraphs on
    # DNA or steel, and more than half of the answers it wrote were not spans of their paragraph (thrown away).
    # With it (next quickstart), 2 of 3 patterns still restated one failure: the 1.5B follows it only in part.
    strategy_scope="New training examples keep one training paragraph verbatim and ask a new question about it "
                   "whose answer is a span of that paragraph: name the kind of question and of answer span (a "
                   "date, a number, a name in a list, a cause, a span after a negation, ...), never a topic, a "
                   "fact or a paragraph of the failures.")
