"""`python -m pada finetune`: LoRA fine-tune the SLM on a task's training subset, save the adapter."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from pada.slm.config import LoRAConfig

HELP = "LoRA fine-tune the small language model on a task's training subset"

_OWN_FLAGS = {"epochs", "seed"}  # declared explicitly below (seed also picks the training subset)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pada.commands.common import positive_int

    parser.add_argument("--task", required=True, help="task name, e.g. arc_challenge (see `pada tasks`)")
    parser.add_argument("--train-size", type=positive_int, required=True,
                        help="training examples (paper: 300/600/1000); at most the task's training pool")
    parser.add_argument("--out", required=True, help="directory for the adapter and training_summary.json")
    parser.add_argument("--model", default=None,
                        help="base model: smollm2-135m (default), qwen2.5-coder-0.5b, a local path or a hub id")
    parser.add_argument("--epochs", type=float, default=LoRAConfig.epochs, help="passes over the data (paper: 5)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the training subset and the training run")
    parser.add_argument("--data-dir", default=None, help="benchmark data root (default: $PADA_DATA_DIR or ../shared/data)")
    add_config_flags(parser, LoRAConfig, skip=_OWN_FLAGS)


def add_config_flags(parser: argparse.ArgumentParser, config_cls, skip: set[str] = frozenset()) -> None:
    """One --flag per dataclass field, with the field's default and help, so CLI and config never drift."""
    group = parser.add_argument_group("training settings")
    for spec in dataclasses.fields(config_cls):
        if spec.name in skip:
            continue
        kind = type(spec.default) if spec.default is not dataclasses.MISSING else str
        group.add_argument("--" + spec.name.replace("_", "-"), dest="cfg_" + spec.name, default=spec.default,
                           type=_yes_no if kind is bool else str if spec.name == "target_modules" else kind,
                           help=f"{spec.metadata.get('help', '')} (default: {spec.default})".replace("%", "%%"))


def _yes_no(text: str) -> bool:
    """argparse type for a boolean setting: true/false, yes/no, on/off or 1/0."""
    value = text.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def config_from_args(args: argparse.Namespace) -> LoRAConfig:
    values = {key.removeprefix("cfg_"): value for key, value in vars(args).items() if key.startswith("cfg_")}
    return LoRAConfig(**values, epochs=args.epochs, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    from pada.commands.common import check_output_dir, check_train_size
    from pada.errors import PadaError
    from pada.slm.config import check_model
    from pada.slm.train import finetune
    from pada.tasks import check_data_root, get_task

    config = config_from_args(args)
    check_data_root(args.data_dir, "--data-dir")
    try:
        check_model(args.model)
    except PadaError as err:
        raise PadaError(f"--model: {err}") from None
    check_output_dir(args.out, "--out", force=True)  # an existing adapter directory is updated in place
    task = get_task(args.task, data_dir=args.data_dir)
    check_train_size(task, args.train_size)
    train = task.splits(train_size=args.train_size, seed=args.seed).train
    print(f"fine-tuning {args.model or 'smollm2-135m'} on {len(train)} {task.name} examples "
          f"for {config.epochs:g} epoch(s) -> {args.out}", file=sys.stderr)
    result = finetune(args.model, [example.messages() for example in train], config, args.out)
    first = result.losses[0]["loss"] if result.losses else float("nan")
    print(f"adapter saved to {result.adapter_dir}: {result.n_examples} examples, loss {first:.4f} -> "
          f"{result.final_loss or float('nan'):.4f}, {result.train_seconds:.0f} s, "
          f"{result.tokens_per_second:.0f} tokens/s")
    return 0
