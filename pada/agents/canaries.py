"""Planted samples: a judge you can check (issue 12; beyond the paper).

A judge that passes everything makes quality control a no-op, and nothing in the
paper's loop would notice. So every QC stage slips samples whose right verdict
is known into the judge's batches, built in code from training examples:

- bad samples ("canaries"), which the judge should reject:
  - `wrong_answer`: a training question with a wrong answer of the right shape
    (multiple choice: another option's letter; GSM8K: the solution with another
    final number; SQuAD: another span of the same context; other tasks: another
    example's answer);
  - `format`: the answer without the task's format (multiple choice: no letter;
    GSM8K: no `#### n` line; other tasks: the answer cut in half);
    for SQuAD `not_span`: an answer that is not a span of its context;
  - `copy`: a verbatim copy of the batch's original example;
  - `mismatch`: a question paired with another example's answer (multiple
    choice: another question's options and answer; SQuAD: another question
    under this context, with this context's answer);
- controls: real training examples shown as samples, which it should accept.

How they are mixed: `CanaryPlanter.plant` is called by `run_qc_rounds` for the
first attempt only (regenerations never see or regenerate them). Canaries go
round-robin into the non-empty judge batches (a seeded order, at most
`MAX_PER_BATCH` each) at seeded positions, as ordinary `SyntheticSample`s, so
the judge's prompt shows them exactly like the generated samples. Their
verdicts are split off before the loop decides anything: they never count
towards a batch's mean, never enter accepted/rejected samples, the sample
counts, the training set or the dashboard's sample review. The pipeline stores
the verdicts (`RunStore.save_canaries`) and `summarise` turns them into the
catch rate (bad samples rejected / bad samples judged) and the control
acceptance shown by `pada status` and the dashboard; `judge_warning` fires when
the judge passed more than a third of the bad ones.

Cost: no extra LLM calls; the judge's first-attempt batches grow by at most
`MAX_PER_BATCH` samples. Deterministic for (seed, iteration, non-empty batches).
"""

from __future__ import annotations

import random
import re
from typing import Literal

from pydantic import BaseModel

from pada.records import Example, Message, SyntheticSample
from pada.tasks.forms import OPTION_LINE, SampleForm, choice_stem, is_span, span_parts, span_prompt
from pada.tasks.scoring import mc_answer

MAX_PER_BATCH = 2  # canaries added to one judge call, so a small judge's batch stays short
WARN_PASS_FRACTION = 1 / 3  # issue 12: warn when the judge passes more than a third of the bad samples
CONTROL = "control"

Kind = Literal["wrong_answer", "format", "not_span", "copy", "mismatch", "control"]

# The bad kinds each form can build, in the order a round cycles through them (after a seeded shuffle).
FORM_KINDS: dict[str, tuple[str, ...]] = {
    "choice": ("wrong_answer", "format", "copy", "mismatch"),
    "number": ("wrong_answer", "format", "copy", "mismatch"),
    "span": ("wrong_answer", "not_span", "copy", "mismatch"),
    "free": ("wrong_answer", "format", "copy", "mismatch"),
}


class CanaryVerdict(BaseModel):
    """One planted sample and what the judge made of it. `control`: a real training example (should pass)."""

    canary_id: str
    iteration: int
    kind: str
    control: bool = False
    based_on_example: str  # the training example it was built from
    shown_with: str  # the original of the judge batch it was slipped into
    messages: list[Message]
    average: float | None = None
    passed: bool = False
    ok: bool = False  # False: the judge gave it no score (failed call or skipped sample)
    feedback: str = ""

    @property
    def caught(self) -> bool:
        """The judge got it right: a bad sample rejected, a control accepted (scored samples only)."""
        return self.ok and (self.passed if self.control else not self.passed)


def bad_kinds(form: SampleForm) -> tuple[str, ...]:
    return FORM_KINDS.get(form.name, FORM_KINDS["free"])


def split_count(total: int) -> tuple[int, int]:
    """(bad samples, controls) for a round of `total` planted samples: a third are controls (6 -> 4 + 2)."""
    controls = total // 3
    return total - controls, controls


# ---------------------------------------------------------------------------
# Building one planted sample (question, answer) from training examples


def _final_number(answer: str) -> re.Match | None:
    return re.search(r"####\s*(-?[\d,]*\.?\d+)\s*$", answer.strip())


def _other_number(text: str, rng: random.Random) -> str:
    value = float(text.replace(",", ""))
    shifted = value + rng.choice([-3, -2, -1, 1, 2, 5, 10]) if value else rng.randint(1, 9)
    if shifted == value:
        shifted += 1
    return str(int(shifted)) if float(shifted).is_integer() else f"{shifted:.2f}"


def _other_span(context: str, golds: list[str], rng: random.Random) -> str | None:
    """A span of `context` as long as the gold answer that is none of the gold answers and overlaps none."""
    words = context.split()
    length = max(1, min(len(golds[0].split()), 6))
    gold_words = {w.strip(".,;:!?\"'()").lower() for gold in golds for w in gold.split()}
    starts = list(range(0, max(0, len(words) - length) + 1))
    rng.shuffle(starts)
    for start in starts:
        span = " ".join(words[start:start + length]).strip(".,;:!?\"'()")
        picked = {w.strip(".,;:!?\"'()").lower() for w in span.split()}
        if span and not picked & gold_words and is_span(span, context):
            return span
    return None


def _answers_of(example: Example) -> list[str]:
    return [a for a in example.gold.get("answers", []) if isinstance(a, str)] or [example.answer]


def build_pair(kind: str, form: SampleForm, example: Example, donor: Example, rng: random.Random
               ) -> tuple[str, str] | None:
    """(question, answer) of a planted sample of `kind`, or None when `example` cannot give one.

    `example` is corrupted (or, for `copy`, copied); `donor` is another training example, the source of a
    mismatched answer. Controls are `example` itself."""
    prompt, answer = example.prompt, example.answer
    if kind in (CONTROL, "copy"):
        return prompt, answer
    if form.name == "choice":
        letters = OPTION_LINE.findall(prompt)
        right = example.gold.get("label") or (re.findall(r"answer is \(?([A-J])", answer) or [None])[0]
        if kind == "wrong_answer":
            wrong = [letter for letter in letters if letter != right]
            return (prompt, mc_answer(rng.choice(wrong))) if wrong else None
        if kind == "format":
            return prompt, rng.choice(["I am not sure, it could be any of them.", "The answer is the second one.",
                                       "None of the options is correct."])
        if kind == "mismatch":  # this question above another question's options, with that question's answer
            stem, _ = choice_stem(prompt)
            donor_stem, _ = choice_stem(donor.prompt)
            if donor_stem == donor.prompt or donor_stem == stem:
                return None
            return f"{stem}\n\n{donor.prompt[len(donor_stem):].strip()}", donor.answer
    elif form.name == "number":
        final = _final_number(answer)
        if kind == "wrong_answer":
            if final is None:
                return None
            return prompt, answer[:final.start(1)] + _other_number(final.group(1), rng)
        if kind == "format":
            return (prompt, answer[:final.start()].rstrip() or answer) if final else None
        if kind == "mismatch":
            mine, theirs = _final_number(answer), _final_number(donor.answer)
            if theirs is None or (mine and mine.group(1) == theirs.group(1)) or donor.prompt == prompt:
                return None
            return prompt, donor.answer
    elif form.name == "span":
        parts = span_parts(prompt)
        if parts is None:
            return None
        context, question = parts
        if kind == "wrong_answer":
            other = _other_span(context, _answers_of(example), rng)
            return (prompt, other) if other else None
        if kind == "not_span":  # another example's answer that this context does not contain
            return (prompt, donor.answer) if not is_span(donor.answer, context) else None
        if kind == "mismatch":  # another question asked of this context, with this context's answer
            donor_parts = span_parts(donor.prompt)
            if donor_parts is None or donor_parts[1] == question:
                return None
            return span_prompt(context, donor_parts[1]), answer
    else:
        if kind == "wrong_answer" or kind == "mismatch":
            return (prompt, donor.answer) if donor.answer.strip() != answer.strip() else None
        if kind == "format":
            lines = answer.strip().splitlines()
            if len(lines) >= 2:
                return prompt, "\n".join(lines[:len(lines) // 2])
            words = answer.split()
            return (prompt, " ".join(words[:len(words) // 2])) if len(words) >= 4 else None
    return None


# ---------------------------------------------------------------------------
# Planting them into a QC round


class CanaryPlanter:
    """Builds and places one QC stage's planted samples (`count` in all, a third of them controls).

    `plant(batches, samples)` -> per batch, a list of (position, SyntheticSample, CanaryVerdict
    template). `batches[i].original` is the example the judge compares batch i against; planted
    samples are built from other training examples (`copy`: from that original)."""

    def __init__(self, train_examples: list[Example], form: SampleForm, count: int, seed: int = 0,
                 iteration: int = 1):
        self.train = list({ex.id: ex for ex in train_examples}.values())
        self.form, self.count, self.seed, self.iteration = form, count, seed, iteration

    def kinds(self, rng: random.Random) -> list[str]:
        bad, controls = split_count(self.count)
        order = list(bad_kinds(self.form))
        rng.shuffle(order)
        kinds = [order[n % len(order)] for n in range(bad)] + [CONTROL] * controls
        rng.shuffle(kinds)
        return kinds

    def plant(self, batches: list, samples: list[list[SyntheticSample]]
              ) -> list[list[tuple[int, SyntheticSample, CanaryVerdict]]]:
        planted: list[list[tuple[int, SyntheticSample, CanaryVerdict]]] = [[] for _ in batches]
        open_batches = [i for i, batch_samples in enumerate(samples) if batch_samples]
        if self.count <= 0 or not open_batches or len(self.train) < 2:
            return planted
        rng = random.Random(f"canaries:{self.seed}:{self.iteration}")
        rng.shuffle(open_batches)
        slots = [i for _ in range(MAX_PER_BATCH) for i in open_batches]  # round-robin, MAX_PER_BATCH deep
        number = 0
        for kind, i in zip(self.kinds(rng), slots):
            original = batches[i].original
            built = self.build(kind, original, rng)
            if built is None:
                continue
            (question, answer), source = built
            sample_id = f"it{self.iteration}-canary-{number}"
            number += 1
            messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            sample = SyntheticSample(sample_id=sample_id, branch="pattern" if batches[i].strategy else "error",
                                     based_on_strategy=batches[i].strategy.strategy_name if batches[i].strategy
                                     else None, based_on_example=source.id, messages=messages)
            verdict = CanaryVerdict(canary_id=sample_id, iteration=self.iteration, kind=kind,
                                    control=kind == CONTROL, based_on_example=source.id,
                                    shown_with=original.id, messages=messages)
            planted[i].append((rng.randint(0, len(samples[i]) + len(planted[i])), sample, verdict))
        return planted

    def build(self, kind: str, original: Example, rng: random.Random
               ) -> tuple[tuple[str, str], Example] | None:
        """((question, answer), the training example it came from) of a `kind` shown with `original`, or None."""
        if kind == "copy":
            pair = build_pair(kind, self.form, original, original, rng)
            return (pair, original) if pair else None
        others = [ex for ex in self.train if ex.id != original.id]
        for _ in range(8):  # a few tries: an example may not give this kind (e.g. one option only)
            example, donor = rng.sample(others, 2) if len(others) >= 2 else (others[0], original)
            pair = build_pair(kind, self.form, example, donor, rng)
            if pair is not None:
                return pair, example
        return None


def mix(samples: list[SyntheticSample], planted: list[tuple[int, SyntheticSample, CanaryVerdict]]
        ) -> list[SyntheticSample]:
    """`samples` with the planted ones inserted at their positions (in planting order)."""
    mixed = list(samples)
    for position, sample, _ in planted:
        mixed.insert(min(position, len(mixed)), sample)
    return mixed


def record(verdict: CanaryVerdict, result) -> CanaryVerdict:
    """The verdict with the judge's `QCResult` for it."""
    return verdict.model_copy(update={"average": result.average, "passed": bool(result.passed and result.ok),
                                      "ok": bool(result.ok and result.average is not None),
                                      "feedback": result.feedback})


# ---------------------------------------------------------------------------
# Reading the verdicts


def summarise(verdicts: list[CanaryVerdict]) -> dict[str, float | int | None]:
    """planted/judged/rejected bad samples, catch_rate (rejected / judged), and the same for controls
    (controls, controls_judged, controls_accepted, control_acceptance). Rates are None without a judged one."""
    bad = [v for v in verdicts if not v.control]
    controls = [v for v in verdicts if v.control]
    judged = [v for v in bad if v.ok]
    controls_judged = [v for v in controls if v.ok]
    rejected = sum(not v.passed for v in judged)
    accepted = sum(v.passed for v in controls_judged)
    return {"planted": len(bad), "judged": len(judged), "rejected": rejected,
            "catch_rate": round(rejected / len(judged), 4) if judged else None,
            "controls": len(controls), "controls_judged": len(controls_judged), "controls_accepted": accepted,
            "control_acceptance": round(accepted / len(controls_judged), 4) if controls_judged else None}


def judge_warning(summary: dict, iteration: int | None = None) -> str | None:
    """A warning when the judge passed more than a third of the bad samples it scored, else None."""
    judged, rejected = summary.get("judged") or 0, summary.get("rejected") or 0
    passed = judged - rejected
    if not judged or passed <= judged * WARN_PASS_FRACTION:
        return None
    where = f"iteration {iteration}: " if iteration is not None else ""
    return (f"{where}the judge passed {passed} of {judged} planted bad samples (more than a third); its scores "
            "do not separate good samples from bad: use a stronger judge model (judge.model)")
