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

Rephrasing (AugGPT) rewrites only `rephrase_target` of a prompt (for
multiple choice the question above the options, which are kept verbatim).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Literal

from pydantic import BaseModel, Field, model_validator

from pada.tasks.scoring import LETTERS, mc_answer, mc_prompt

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


@dataclass(frozen=True)
class SampleForm:
    """How a generator writes one example of a task, and how it becomes (user turn, assistant reply)."""

    name: str
    item: type[BaseModel]
    fields_help: str  # completes "Return "variants": n items, each with ..." in the generation prompts
    turns: Callable[[BaseModel], tuple[str, str]]
    rephrase_target: Callable[[str], tuple[str, Callable[[str], str]]] = \
        lambda prompt: (prompt, lambda text: text)


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


FREE_FORM = SampleForm(
    "free", FreeItem, '"question" (the user message) and "answer" (the assistant reply)', _free_turns)
CHOICE_FORM = SampleForm(
    "choice", ChoiceItem,
    '"question" (the question text only), "options" (the option texts as a list, without letters; the same '
    'number of options as the example) and "answer_letter" (the letter of the correct option: A for the first '
    'option, B for the second, ...). The code adds the letters, the instruction line and the reply "The answer is X."',
    _choice_turns, choice_stem)
NUMBER_FORM = SampleForm(
    "number", NumberItem,
    '"question" (the problem), "solution" (the worked solution, step by step) and "final_answer" (the final '
    'number only). The code ends the reply with "#### <final_answer>".', _number_turns)
