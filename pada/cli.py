"""`python -m pada <command>`: one subcommand per module in `pada.commands`.

Each command module defines `HELP`, `add_arguments(parser)` and `run(args) -> int`.
Heavy libraries (torch, transformers) are imported inside `run`, so `--help`
and light commands start fast.

Every command fails the same way (`main`): a bad flag or a `PadaError` prints
ONE line `error: <where>: <what>` on stderr and exits 2; an unexpected
exception prints one line too (exit 1) and saves its traceback to a file, so a
bad input never shows a traceback while a real bug stays diagnosable
(`--debug` or PADA_DEBUG=1 prints the traceback instead).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pada.errors import PadaError, one_line

COMMANDS = ["tasks", "score", "finetune", "eval", "run", "resume", "status", "runs", "compare", "sweep", "export"]
USAGE_ERROR = 2  # bad flags, bad input files, bad configs
INTERNAL_ERROR = 1  # an exception nobody anticipated: a bug, reported with a saved traceback


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (no usage block) and exits 2."""

    def error(self, message: str):
        self.exit(USAGE_ERROR, f"error: {one_line(message)} (see `{self.prog} --help`)\n")


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
    parser = OneLineParser(prog="python -m pada", description="PaDA Studio command line")
    parser.add_argument("--debug", action="store_true",
                        help="print the full traceback of an unexpected error (same as PADA_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in _available_commands().items():
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def _debug(args) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("PADA_DEBUG", "").strip() not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except PadaError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `python -m pada runs | head`
        return 0
    except Exception as err:  # noqa: BLE001 - the one place that turns any failure into one line
        if _debug(args):
            raise
        saved = _save_traceback()
        print(f"error: {args.command}: unexpected {type(err).__name__}: {one_line(err)[:300]} "
              f"(traceback in {saved}; rerun with --debug or PADA_DEBUG=1 to print it)", file=sys.stderr)
        return INTERNAL_ERROR


def _save_traceback() -> str:
    import tempfile
    import traceback

    try:
        fd, path = tempfile.mkstemp(prefix="pada-error-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as out:
            out.write(f"python -m pada {' '.join(sys.argv[1:])}\n\n{traceback.format_exc()}")
        return path
    except OSError:
        return "(could not be saved)"
