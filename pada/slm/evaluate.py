"""Score the SLM on a list of examples: predictions for every example, failures for the wrong ones.

The headline metric is the mean of `Score.correct` (accuracy for multiple
choice and GSM8K, exact match for SQuAD, pass@1 for code); any numeric
`Score.metrics` (e.g. SQuAD's f1) are averaged too and reported beside it.
Failures are the (input, ground truth, prediction) triples the error-analysis
agent reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pada.records import Example, Failure, Prediction
from pada.slm.backends import SLMBackend
from pada.slm.generate import ProgressFn
from pada.tasks.base import Task


@dataclass
class EvalResult:
    split: str
    metric_name: str  # the task's headline metric, e.g. "accuracy"
    metric: float  # mean of Score.correct over the examples (0.0 when there are none)
    predictions: list[Prediction] = field(default_factory=list)  # one per example, input order
    failures: list[Failure] = field(default_factory=list)  # the wrong ones, input order
    metrics: dict[str, float] = field(default_factory=dict)  # means of Score.metrics, e.g. {"f1": ...}
    seconds: float = 0.0  # generation + scoring wall time

    @property
    def n(self) -> int:
        return len(self.predictions)

    def summary(self) -> str:
        extra = "".join(f", {name} {value:.4f}" for name, value in sorted(self.metrics.items()))
        return (f"{self.split}: {self.metric_name} {self.metric:.4f} ({self.n - len(self.failures)}/{self.n})"
                f"{extra} in {self.seconds:.1f} s")


def evaluate(task: Task, examples: Sequence[Example], backend: SLMBackend, split: str,
             max_new_tokens: int | None = None, on_progress: ProgressFn | None = None) -> EvalResult:
    """Reply greedily (through `backend`) to each example's user turn, score with `task.score`, collect failures."""
    started = time.perf_counter()
    replies = backend.replies([ex.messages(with_answer=False) for ex in examples],
                              max_new_tokens=max_new_tokens or task.max_new_tokens, on_progress=on_progress)
    predictions, failures = [], []
    metric_sums: dict[str, float] = {}
    for example, reply in zip(examples, replies):
        score = task.score(example, reply)
        predictions.append(Prediction(id=example.id, split=split, prediction=reply, extracted=score.extracted,
                                      correct=score.correct, metrics=dict(score.metrics)))
        for name, value in score.metrics.items():
            metric_sums[name] = metric_sums.get(name, 0.0) + float(value)
        if not score.correct:
            failures.append(Failure(id=example.id, split=split, input=example.prompt, ground_truth=example.answer,
                                    prediction=reply, extracted=score.extracted))
    n = len(examples)
    return EvalResult(
        split=split, metric_name=task.metric,
        metric=sum(p.correct for p in predictions) / n if n else 0.0,
        predictions=predictions, failures=failures,
        metrics={name: total / n for name, total in metric_sums.items()},
        seconds=time.perf_counter() - started,
    )


def write_predictions(path: str | Path, predictions: Sequence[Prediction]) -> Path:
    """One JSON object per line: id, split, prediction, extracted, correct (+ metrics when the task has any)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for prediction in predictions:
            handle.write(json.dumps(prediction.model_dump(exclude_defaults=False), ensure_ascii=False) + "\n")
    return path
