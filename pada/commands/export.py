"""`python -m pada export RUN --iteration I --out DIR`: an iteration's training set and adapter."""

from __future__ import annotations

HELP = "export an iteration's training set (chat-messages JSONL) and its LoRA adapter"


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run id or directory")
    parser.add_argument("--iteration", type=int, required=True, help="iteration to export (1-based)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--runs-root", default=None, help="where runs live (default $PADA_RUNS_DIR or runs/)")


def run(args) -> int:
    import shutil
    from pathlib import Path

    from pada.errors import PadaError
    from pada.store import RunStore

    out = Path(args.out)
    with RunStore.open(args.run, runs_root=args.runs_root) as store:
        if args.iteration not in store.iterations() or not store.training_set(args.iteration):
            raise PadaError(f"run {store.run_id} has no training set for iteration {args.iteration} "
                            f"(iterations: {store.iterations()})")
        train_file = store.export_training_set(args.iteration, out)
        adapter = store.adapter_dir(args.iteration)
        if (adapter / "adapter_config.json").is_file():
            shutil.copytree(adapter, out / "adapter", dirs_exist_ok=True)
            print(f"adapter      {out / 'adapter'}")
        else:
            print(f"adapter      (none yet for iteration {args.iteration})")
    print(f"training set {train_file}")
    return 0
