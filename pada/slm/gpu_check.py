"""The reduced GPU run behind scripts/gpu_check.sh: fine-tune, evaluate, and report speed and peak GPU memory.

Default (one GPU): the bundled SmolLM2-135M in bfloat16 fine-tuned on 300 SQuAD training examples for 1 epoch,
then 500 test questions answered greedily with the adapter: one PaDA iteration's SLM work (the LLM stages are
not run). It reads only local files: the bundled model and the task data (the Hugging Face cache or --data-dir).

    python -m pada.slm.gpu_check                                  # on a GPU; exits 2 at once without one
    python -m pada.slm.gpu_check --device cpu --train 8 --test 8  # dry run of the same code on a CPU
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from pada.commands.common import positive_int
    from pada.commands.eval import _batch_size

    parser = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cuda (default) or cpu (dry run)")
    parser.add_argument("--train", type=positive_int, default=300, help="training examples (default: 300)")
    parser.add_argument("--test", type=positive_int, default=500, help="test questions (default: 500)")
    parser.add_argument("--task", default="squad", help="task (default: squad, the quickstart's)")
    parser.add_argument("--model", default="smollm2-135m", help="SLM (default: the bundled smollm2-135m)")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default=None,
                        help="default: bfloat16 on cuda, auto on cpu")
    parser.add_argument("--train-batch-size", type=positive_int, default=8, help="sequences per step (default: 8)")
    parser.add_argument("--eval-batch-size", type=_batch_size, default="auto",
                        help="prompts generated together (default: auto, 256 for SmolLM2 on a GPU)")
    parser.add_argument("--activation-checkpointing", action="store_true", help="recompute activations in backward")
    parser.add_argument("--data-dir", default=None, help="benchmark data root (default: $PADA_DATA_DIR, the HF cache)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA GPU visible (torch {torch.__version__}, cuda build {torch.version.cuda}); "
              "for a dry run on this machine: scripts/gpu_check.sh --device cpu --train 8 --test 8", file=sys.stderr)
        return 2
    from pada.errors import PadaError, one_line

    try:
        figures = run_check(args)
    except PadaError as err:
        print(f"gpu_check: {one_line(err)}", file=sys.stderr)
        return 1
    for name, value in figures.items():
        print(f"{name}: {value}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
    return 0


def run_check(args: argparse.Namespace) -> dict:
    """Fine-tune then evaluate as the pipeline does; the figures the script prints."""
    import torch

    from pada.commands.common import check_train_size
    from pada.slm.backends import HFBackend
    from pada.slm.config import LoRAConfig
    from pada.slm.evaluate import evaluate
    from pada.slm.train import finetune
    from pada.tasks import check_data_root, get_task

    started = time.perf_counter()
    dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "auto")
    check_data_root(args.data_dir, "--data-dir")
    task = get_task(args.task, data_dir=args.data_dir)
    check_train_size(task, args.train, "--train")
    splits = task.splits(train_size=args.train, test_size=args.test, seed=0)
    gpu = args.device == "cuda"
    config = LoRAConfig(epochs=1, batch_size=args.train_batch_size, dtype=dtype, device=args.device,
                        activation_checkpointing=args.activation_checkpointing)
    with tempfile.TemporaryDirectory(prefix="pada-gpu-check-") as scratch:
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        trained = finetune(args.model, [example.messages() for example in splits.train], config, scratch)
        train_peak = torch.cuda.max_memory_allocated() if gpu else None
        if gpu:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        with HFBackend(args.model, scratch, device=args.device, dtype=dtype,
                       batch_size=args.eval_batch_size) as backend:
            batch_size = backend.batch_size
            result = evaluate(task, splits.test, backend, "test")
        eval_peak = torch.cuda.max_memory_allocated() if gpu else None
    gib = 2 ** 30
    return {
        "device": torch.cuda.get_device_name(0) if gpu else "cpu",
        "dtype": trained.summary["dtype"],
        "train_examples": trained.n_examples,
        "finetune_tokens_per_s": round(trained.tokens_per_second, 1),
        "finetune_seconds": round(trained.train_seconds, 1),
        "eval_questions": result.n,
        "eval_batch_size": batch_size,
        "eval_samples_per_s": round(result.n / max(result.seconds, 1e-9), 2),
        "eval_seconds": round(result.seconds, 1),
        f"test_{result.metric_name}": round(result.metric, 4),
        "peak_gpu_memory_finetune_gib": round(train_peak / gib, 2) if gpu else None,
        "peak_gpu_memory_eval_gib": round(eval_peak / gib, 2) if gpu else None,
        "total_seconds": round(time.perf_counter() - started, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
