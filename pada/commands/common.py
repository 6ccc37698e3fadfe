"""Checks the commands share: flag values, output paths and data directories.

Each check runs before a command reads, trains or writes anything, and fails
with a one-line `PadaError` that names the flag (`--out runs/x: is a
directory; ...`). Nothing here creates a file or a directory.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

from pada.errors import PadaError

PSEUDO_FILESYSTEMS = ("/proc", "/sys")  # the kernel's; files there are not data


# ----------------------------------------------------------------------------- flag types (argparse)

def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0 (0, negatives, nan and inf are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text!r}")
    return value


# ----------------------------------------------------------------------------- output paths

def _on_pseudo_filesystem(path: Path) -> bool:
    candidates = {os.path.abspath(path)}
    try:
        candidates.add(str(path.resolve()))
    except (OSError, RuntimeError):
        pass
    return any(c == root or c.startswith(root + "/") for c in candidates for root in PSEUDO_FILESYSTEMS)


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_can_create(target: Path, flag: str, shown: str) -> None:
    """`target` (not existing yet, or a directory to write into) could be created/written: probe, leave nothing."""
    if target.is_dir():
        base = target
    elif target.exists():
        base = target.parent
    else:
        base = _nearest_existing(target.parent)
    if not base.is_dir():
        raise PadaError(f"{flag} {shown}: {base} is a file, not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=base, prefix=".pada-write-test-"):
            pass
    except OSError as err:
        raise PadaError(f"{flag} {shown}: cannot write under {base} ({err.strerror or err})") from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_file(path: str | os.PathLike, flag: str = "--out", force: bool = False,
                      inputs: dict[str, str | os.PathLike] | None = None) -> Path:
    """`path` as a file this command may write: not a directory, not an input, not /proc; an existing
    file only with --force (a stream such as /dev/stdout is fine)."""
    shown = str(path)
    out = Path(path).expanduser()
    if out.exists() and not out.is_file() and not out.is_dir():
        return out  # /dev/stdout, /dev/null, a named pipe: writing is what the user asked for
    if _on_pseudo_filesystem(out):
        raise PadaError(f"{flag} {shown}: is on a kernel pseudo-filesystem (/proc, /sys); give a path "
                        "in an ordinary directory")
    if out.is_dir():
        raise PadaError(f"{flag} {shown}: is a directory; give a file path, e.g. {out / 'scored.jsonl'}")
    for name, source in (inputs or {}).items():
        if source is not None and _same_file(out, Path(source).expanduser()):
            raise PadaError(f"{flag} {shown}: is the {name} file itself; writing there would destroy the input "
                            "(even with --force); pick another path")
    if out.is_file() and out.stat().st_size > 0 and not force:
        raise PadaError(f"{flag} {shown}: file exists; pass --force to overwrite it")
    _check_can_create(out, flag, shown)
    return out


def check_output_dir(path: str | os.PathLike, flag: str = "--out", force: bool = False,
                     protected: dict[str, str | os.PathLike] | None = None) -> Path:
    """`path` as a directory this command may fill: not a file, not /proc, not inside (or holding) one of
    the `protected` input directories; a non-empty one only with --force."""
    shown = str(path)
    out = Path(path).expanduser()
    if _on_pseudo_filesystem(out):
        raise PadaError(f"{flag} {shown}: is on a kernel pseudo-filesystem (/proc, /sys); give a path "
                        "in an ordinary directory")
    if out.exists() and not out.is_dir():
        raise PadaError(f"{flag} {shown}: is a file, not a directory")
    absolute = Path(os.path.abspath(out))
    for name, source in (protected or {}).items():
        src = Path(os.path.abspath(Path(source).expanduser()))
        if absolute == src or src in absolute.parents or absolute in src.parents:
            raise PadaError(f"{flag} {shown}: overlaps the {name} ({src}); writing there would mix the "
                            "output into the input (even with --force); pick another directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise PadaError(f"{flag} {shown}: directory is not empty; pass --force to write into it")
    _check_can_create(out, flag, shown)
    return out


def write_error(flag: str, path: str | os.PathLike, err: OSError) -> PadaError:
    """A write that failed after the checks (disk full, permissions changed) as one line."""
    return PadaError(f"{flag} {path}: cannot write ({err.strerror or err})")


def check_train_size(task, size: int, flag: str = "--train-size") -> None:
    """The training subset fits the task's pool: sizes are never clamped silently."""
    pool = len(task.pools().train)
    if size > pool:
        raise PadaError(f"{flag} {size}: more than the training pool of {task.name} ({pool} examples); "
                        f"use at most {pool}")
