"""Run a command and report its wall time and the peak resident memory of its whole process tree.

`/usr/bin/time -v` reports the largest single process; a run whose LLM is a separate server process (or
that forks workers) needs the sum over the tree, sampled here from /proc every `--interval` seconds.

    .venv/bin/python benchmarks/peak_rss.py -- .venv/bin/python -m pada run --config configs/quickstart.yaml
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))  # ppid -> pid
    return tree


def tree_rss(root: int) -> tuple[int, int]:
    """(bytes resident in `root` and all its descendants, number of processes)."""
    tree, todo, total, count = children_of(), [root], 0, 0
    while todo:
        pid = todo.pop()
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            count += 1
        except (OSError, IndexError, ValueError):
            pass
        todo += tree.get(pid, [])
    return total, count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command after --")
    started = time.monotonic()
    process = subprocess.Popen(command)
    peak, peak_processes = 0, 0
    while process.poll() is None:
        rss, count = tree_rss(process.pid)
        if rss > peak:
            peak, peak_processes = rss, count
        time.sleep(args.interval)
    wall = time.monotonic() - started
    print(f"exit {process.returncode}; wall {wall:.0f} s ({wall / 60:.1f} min); peak RSS of the process tree "
          f"{peak / 2**30:.2f} GiB ({peak_processes} processes at the peak)", file=sys.stderr)
    return process.returncode


if __name__ == "__main__":
    sys.exit(main())
