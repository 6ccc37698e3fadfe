"""Batched vs one-at-a-time greedy generation with the real bundled SmolLM2-135M on ARC (or another task).

    .venv/bin/python benchmarks/bench_eval.py [--task arc_challenge] [--n 64] [--batch-size 16] [--dtype auto]
                                              [--max-new-tokens N]

Both runs go through the same `pada.slm.generate.generate` (batch_size=1 vs --batch-size) in ONE process on the
same prompts; prints samples/s of each, the ratio, and how many outputs are identical. On a shared CPU the
numbers move with other processes' load: rerun if they look disturbed (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning OpenMP threads hurt on a busy CPU
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def task_prompts(task_name: str, n: int) -> tuple[list[list[dict]], int]:
    """First n validation prompts of a task via the registry (for ARC without it: a minimal formatter)."""
    try:
        from pada.tasks import get_task

        task = get_task(task_name)
        examples = task.splits(train_size=1).validation[:n]
        return [ex.messages(with_answer=False) for ex in examples], task.max_new_tokens
    except ImportError:
        if task_name != "arc_challenge":
            raise
        from pada.paths import data_dir

        rows = [json.loads(line) for line in open(data_dir() / "arc_challenge" / "ARC-Challenge-Dev.jsonl")][:n]
        prompts = []
        for row in rows:
            options = "\n".join(f"{c['label']}. {c['text']}" for c in row["question"]["choices"])
            text = f"{row['question']['stem']}\n\n{options}\n\nAnswer with the letter of the correct option."
            prompts.append([{"role": "user", "content": text}])
        return prompts, 10


def timed(model, tokenizer, prompts, max_new_tokens: int, batch_size: int) -> tuple[list[str], float, float]:
    """(replies, wall seconds, CPU seconds of this process). CPU time barely moves with other processes' load,
    so on a shared machine its ratio is the steadier estimate of the speed-up."""
    from pada.slm.generate import generate

    wall, cpu = time.perf_counter(), time.process_time()
    replies = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return replies, time.perf_counter() - wall, time.process_time() - cpu


def timed_hf_generate(model, tokenizer, prompts, max_new_tokens: int, batch_size: int) -> tuple[list[str], float]:
    """The plain approach for comparison: `model.generate`, prompts in the given order, left padding."""
    import torch

    from pada.slm.generate import prompt_ids

    ids = [prompt_ids(tokenizer, conv) for conv in prompts]
    replies, started = [], time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            batch = tokenizer.pad({"input_ids": ids[start:start + batch_size]}, padding=True, return_tensors="pt",
                                  padding_side="left")
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            replies += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    return replies, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="arc_challenge", help="any registered task (default arc_challenge)")
    parser.add_argument("--n", type=int, default=64, help="validation prompts (default 64)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the task's budget")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--skip-bs1", action="store_true", help="only time the batched run")
    parser.add_argument("--hf-baseline", action="store_true",
                        help="also time plain model.generate (unsorted, no shared prefix) at bs1 and --batch-size")
    args = parser.parse_args(argv)

    import torch

    from pada.slm.generate import load_for_inference

    prompts, task_budget = task_prompts(args.task, args.n)
    max_new_tokens = args.max_new_tokens or task_budget
    model, tokenizer = load_for_inference(args.model, dtype=args.dtype)
    print(f"task {args.task} model {args.model} dtype {model.dtype} threads {torch.get_num_threads()} prompts {len(prompts)} "
          f"max_new_tokens {max_new_tokens} load avg {os.getloadavg()[0]:.1f}")
    timed(model, tokenizer, prompts[:2], max_new_tokens, 2)  # warm-up: first-call allocations, kernel selection

    n = len(prompts)
    batched, batched_s, batched_cpu = timed(model, tokenizer, prompts, max_new_tokens, args.batch_size)
    print(f"batched bs={args.batch_size}: {n / batched_s:.2f} samples/s ({batched_s:.1f} s wall, {batched_cpu:.1f} s CPU)")
    if args.skip_bs1:
        return 0
    single, single_s, single_cpu = timed(model, tokenizer, prompts, max_new_tokens, 1)
    print(f"one at a time:  {n / single_s:.2f} samples/s ({single_s:.1f} s wall, {single_cpu:.1f} s CPU)")
    same = sum(a == b for a, b in zip(batched, single))
    print(f"speed-up {single_s / batched_s:.2f}x wall, {single_cpu / batched_cpu:.2f}x CPU time; "
          f"identical outputs {same}/{n}; load avg {os.getloadavg()[0]:.1f}")
    print("sample replies:", [reply for reply in batched[:3]])
    if args.hf_baseline:
        for batch_size in (args.batch_size, 1):
            replies, seconds = timed_hf_generate(model, tokenizer, prompts, max_new_tokens, batch_size)
            same = sum(a == b for a, b in zip(replies, single))
            print(f"plain model.generate bs={batch_size}: {n / seconds:.2f} samples/s ({seconds:.1f} s wall); "
                  f"identical to ours (bs1) {same}/{n}; load avg {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
