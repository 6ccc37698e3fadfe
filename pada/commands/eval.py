"""`python -m pada eval`: score the SLM (optionally with a LoRA adapter) on a task split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "evaluate the small language model (optionally with a LoRA adapter) on a task split"

SPLITS = ("train", "validation", "test")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pada.commands.common import positive_int

    parser.add_argument("--task", required=True, help="task name, e.g. arc_challenge (see `pada tasks`)")
    parser.add_argument("--split", choices=SPLITS, default="validation", help="which split (default: validation)")
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N examples of the split")
    parser.add_argument("--adapter", default=None, help="LoRA adapter directory from `pada finetune --out`")
    parser.add_argument("--model", default=None,
                        help="base model (default: the adapter's base model, else smollm2-135m)")
    parser.add_argument("--batch-size", type=_batch_size, default="auto",
                        help="prompts generated together (hf) or requests in flight (vllm); default auto: 16 on a "
                             "CPU, 128-256 on a GPU, 64 requests for vllm")
    parser.add_argument("--backend", choices=("hf", "vllm"), default="hf",
                        help="hf = transformers in this process (default); vllm = a vLLM server at --api-base")
    parser.add_argument("--api-base", default=None,
                        help="vllm: the server's OpenAI base, e.g. http://localhost:8000/v1 (server started with "
                             "--enable-lora --max-lora-rank 32)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=None, help="generation budget (default: the task's)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="auto = bfloat16 where the hardware is fast at it, else float32")
    parser.add_argument("--out", default=None, help="write predictions as JSONL (id, prediction, extracted, correct)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    parser.add_argument("--train-size", type=positive_int, default=1000, help="training subset size, for --split train")
    parser.add_argument("--test-size", type=positive_int, default=500, help="fixed test subset size (default: 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training subset, for --split train")
    parser.add_argument("--data-dir", default=None, help="benchmark data root (default: $PADA_DATA_DIR or ../shared/data)")


def run(args: argparse.Namespace) -> int:
    from pada.commands.common import check_output_file, check_train_size
    from pada.errors import PadaError
    from pada.slm.config import check_model
    from pada.config import ConfigError, SLMConfig
    from pada.slm.backends import open_backend
    from pada.slm.evaluate import evaluate, write_predictions
    from pada.tasks import check_data_root, get_task

    check_data_root(args.data_dir, "--data-dir")
    if args.out:
        check_output_file(args.out, "--out", args.force)
    base_model = args.model or _adapter_base_model(args.adapter)
    try:
        check_model(base_model)
    except PadaError as err:
        raise PadaError(f"--model: {err}" if args.model else f"base model of --adapter {args.adapter}: {err}") from None
    task = get_task(args.task, data_dir=args.data_dir)
    if args.split == "train":
        check_train_size(task, args.train_size)
    splits = task.splits(train_size=args.train_size, test_size=args.test_size, seed=args.seed)
    examples = getattr(splits, args.split)[: args.limit]
    try:
        slm = SLMConfig(model=base_model or "smollm2-135m", eval_batch_size=args.batch_size, backend=args.backend,
                        api_base=args.api_base)
    except ConfigError as err:
        raise PadaError(f"--{(err.field or 'backend').replace('_', '-')}: {err}") from None
    print(f"evaluating {base_model or 'smollm2-135m'}{' + ' + args.adapter if args.adapter else ''} "
          f"on {len(examples)} {task.name} {args.split} examples ({args.backend})", file=sys.stderr)
    with open_backend(slm, args.adapter, dtype=args.dtype) as backend, _progress_bar(len(examples)) as on_progress:
        result = evaluate(task, examples, backend, args.split, max_new_tokens=args.max_new_tokens,
                          on_progress=on_progress)
    if args.out:
        from pada.commands.common import write_error

        try:
            written = write_predictions(args.out, result.predictions)
        except OSError as err:
            raise write_error("--out", args.out, err) from None
        print(f"predictions written to {written}", file=sys.stderr)
    print(result.summary())
    return 0


def _batch_size(text: str) -> int | str:
    """argparse type: 'auto' or an integer >= 1."""
    from pada.commands.common import positive_int

    return "auto" if text.strip().lower() == "auto" else positive_int(text)


def _adapter_base_model(adapter: str | None) -> str | None:
    """The base model an adapter was trained on (from its training_summary.json), so --model can be left out."""
    from pada.errors import PadaError
    from pada.slm.train import SUMMARY_FILE

    if adapter is None:
        return None
    adapter_dir = Path(adapter)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise PadaError(f"--adapter {adapter}: not a LoRA adapter directory (no adapter_config.json); "
                        "pass the --out directory of `pada finetune`")
    summary = adapter_dir / SUMMARY_FILE
    if summary.is_file():
        return json.loads(summary.read_text()).get("base_model")
    return None


class _progress_bar:
    """tqdm bar driven by `on_progress(done, total)`."""

    def __init__(self, total: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="ex", desc="generating", file=sys.stderr)

    def __enter__(self):
        def on_progress(done: int, total: int) -> None:
            self.bar.update(done - self.bar.n)

        return on_progress

    def __exit__(self, *exc) -> None:
        self.bar.close()
