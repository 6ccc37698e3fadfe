"""Pick a judge by how it scores samples whose verdict is known (issue 12: "a judge you can check").

For `--n` training examples of `--task`, each one is the "original" of judge calls whose samples are the
planted set of pada/agents/canaries.py: one bad sample of every kind the task's form builds (wrong answer,
broken format or non-span, copy of the original, mismatched answer) and `--controls` real training
examples shown as samples, shuffled and sent `--batch` at a time through the same prompt and schema as the
pipeline's quality control (`pada.agents.quality.judge_batches`, threshold 7). Prints, per kind, how many
the judge rejected by its scores alone (the paper's judge) and with the answer check (the judge answers
each question itself, pada/agents/quality.py), from the same replies, then the catch rate (bad samples
rejected / scored) and the control acceptance (training examples accepted / scored). Goal (issue 12):
catch rate >= 80%, control acceptance >= 70%.

Any litellm model string works, through `LLMClient`: `local/qwen2.5-coder-0.5b`,
`local/qwen2.5-coder-1.5b` (bundled, served by llama-server), `openai/<m> --api-base URL`, ...

Run:  .venv/bin/python benchmarks/bench_judge.py --judge local/qwen2.5-coder-0.5b --task gsm8k --n 10
      [--with-strategy] [--batch 3] [--controls 2] [--seed 0] [--json] [--show]
Replies are not cached (each run measures the judge); cost: ceil((kinds + controls) / batch) calls per example.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

from pada.agents.canaries import CONTROL, CanaryPlanter, CanaryVerdict, bad_kinds, record, summarise  # noqa: E402
from pada.agents.quality import QCBatch, QCConfig, judge_batches  # noqa: E402
from pada.llm import LLMClient, LLMConfig  # noqa: E402
from pada.records import Strategy, SyntheticSample  # noqa: E402
from pada.tasks import get_task  # noqa: E402

# A strategy like the ones the pipeline drafts, for --with-strategy (pattern-branch batches score adherence too).
STRATEGY = Strategy(cluster_id=0, category_name="multi-step reasoning", strategy_name="Step-by-step variants",
                    generation_approach="New questions of the same kind that need the same steps to answer")


def planted_calls(task_name: str, n: int, controls: int, batch: int, seed: int, with_strategy: bool):
    """[(QCBatch, [SyntheticSample], [CanaryVerdict])] for `n` originals: every bad kind plus controls."""
    task = get_task(task_name)
    form = task.sample_form
    # Planted samples are built from random other examples of the pool: a pool several times the number
    # built keeps repeats rare (with 12 examples for 12 controls, one example was 4 of the 12).
    wanted = n * (len(bad_kinds(form)) + controls)
    pool = task.splits(train_size=max(n + 4, 12, 3 * wanted), val_size=2, test_size=2, seed=seed).train
    planter = CanaryPlanter(pool, form, count=0, seed=seed)
    rng = random.Random(f"bench_judge:{seed}")
    calls, number = [], 0
    for original in pool[:n]:
        kinds = list(bad_kinds(form)) + [CONTROL] * controls
        rng.shuffle(kinds)
        shown: list[tuple[SyntheticSample, CanaryVerdict]] = []
        for kind in kinds:
            built = planter.build(kind, original, rng)
            if built is None:
                continue
            (question, answer), source = built
            messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            sample_id = f"bench-{number}"
            number += 1
            shown.append((SyntheticSample(sample_id=sample_id, branch="pattern" if with_strategy else "error",
                                          based_on_example=source.id, messages=messages),
                          CanaryVerdict(canary_id=sample_id, iteration=0, kind=kind, control=kind == CONTROL,
                                        based_on_example=source.id, shown_with=original.id, messages=messages)))
        qc_batch = QCBatch(original, STRATEGY if with_strategy else None, form=form)  # as the pipeline judges
        for start in range(0, len(shown), batch):
            part = shown[start:start + batch]
            calls.append((qc_batch, [s for s, _ in part], [v for _, v in part]))
    return calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judge", default="local/qwen2.5-coder-0.5b", help="litellm model string of the judge")
    parser.add_argument("--api-base", default=None, help="server URL for openai/... or hosted_vllm/... models")
    parser.add_argument("--task", default="gsm8k", help="arc_challenge, gsm8k, hellaswag, squad or humaneval")
    parser.add_argument("--n", type=int, default=10, help="training examples used as originals")
    parser.add_argument("--controls", type=int, default=2, help="real training examples shown per original")
    parser.add_argument("--batch", type=int, default=3, help="samples per judge call (the pipeline's B, ~3)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--with-strategy", action="store_true", help="judge as pattern batches (adherence too)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--show", action="store_true", help="also print every sample's answer and the judge's own")
    args = parser.parse_args(argv)

    calls = planted_calls(args.task, args.n, args.controls, args.batch, args.seed, args.with_strategy)
    judge = LLMClient(LLMConfig(model=args.judge, api_base=args.api_base, concurrency=args.concurrency))
    started = time.perf_counter()
    config = QCConfig()
    results = judge_batches(judge, [c[0] for c in calls], [c[1] for c in calls], 1, config)
    seconds = time.perf_counter() - started
    verdicts = [record(verdict, result) for (_, _, batch_verdicts), batch_results in zip(calls, results)
                for verdict, result in zip(batch_verdicts, batch_results)]
    # The verdict of the scores alone (the paper's judge), from the same replies: side by side with the answer check's.
    by_scores = [verdict.model_copy(update={"passed": verdict.ok and verdict.average >= config.threshold})
                 for verdict in verdicts]
    flat = [result for batch_results in results for result in batch_results]
    per_kind: dict[str, dict[str, int]] = {}
    for v, alone, result in zip(verdicts, by_scores, flat):
        row = per_kind.setdefault(v.kind, {"shown": 0, "scored": 0, "rejected": 0, "rejected_by_scores": 0,
                                           "answered": 0})
        row["shown"] += 1
        row["scored"] += v.ok
        row["rejected"] += v.ok and not v.passed
        row["rejected_by_scores"] += alone.ok and not alone.passed
        row["answered"] += result.answer_agrees is not None
    summary = {"judge": args.judge, "task": args.task, "n": args.n, "calls": len(calls),
               "seconds": round(seconds, 1), **summarise(verdicts), "per_kind": per_kind,
               "scores_alone": summarise(by_scores)}
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"judge {args.judge} on {args.task}: {len(calls)} batches, {seconds:.1f} s")
    print(f"  {'kind':<13} {'scores alone':>14} {'with the answer check':>22}  (judge answered)")
    for kind, row in sorted(per_kind.items()):
        if kind == CONTROL:
            verb = "accepted"
            alone, checked = row["scored"] - row["rejected_by_scores"], row["scored"] - row["rejected"]
        else:
            verb, alone, checked = "rejected", row["rejected_by_scores"], row["rejected"]
        scored = row["scored"]
        print(f"  {kind:<13} {f'{alone}/{scored}':>14} {f'{checked}/{scored}':>22}  "
              f"({row['answered']}/{row['shown']}) {verb}")
    if args.show:
        for v, result in zip(verdicts, flat):
            print(f"  {v.kind:<13} {'passed' if v.passed else 'rejected':<9} sample {v.messages[-1]['content']!r}"
                  f" judge {result.judge_answer!r}")
    rate = lambda value: "n/a" if value is None else f"{100 * value:.0f}%"  # noqa: E731
    for label, numbers in (("scores alone", summary["scores_alone"]), ("with the answer check", summary)):
        print(f"{label}: catch rate {rate(numbers['catch_rate'])} (goal >= 80%), control acceptance "
              f"{rate(numbers['control_acceptance'])} (goal >= 70%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
