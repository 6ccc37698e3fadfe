"""`python -m pada <command>`: one subcommand per module in `pada.commands`.

Each command module defines `HELP`, `add_arguments(parser)` and `run(args) -> int`.
Heavy libraries (torch, transformers) are imported inside `run`, so `--help`
and light commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pada.errors import PadaError

COMMANDS = ["tasks", "score", "finetune", "eval", "run", "resume", "status", "runs", "compare", "export"]


def _available_commands() -> dict[str, object]:
    modules = {}
    for name in COMMANDS:
        try:
            modules[name] = importlib.import_module(f"pada.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"pada.commands.{name}":
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pada", description="PaDA Studio command line")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in _available_commands().items():
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except PadaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
