"""`python -m pada sweep --config sweep.yaml [--executor local|ray]`: comparisons over tasks x train sizes.

A sweep file names a base run config and the grid (see configs/sweep-example.yaml):

    base: paper/arc_challenge.yaml    # a run config (relative to this file), or the config itself, inline
    tasks: [arc_challenge, gsm8k, {task: humaneval, train_sizes: [300], overrides: {...}}]
    train_sizes: [300, 600, 1000]
    methods: [pada, vanilla]
    seeds: 3                          # the base seed .. seed+2, or the seeds themselves: [0, 1, 2]
    ablations: false                  # true: also PaDA without patterns / training errors / QC
    node_runs_dir: /local/pada-runs   # optional, with --executor ray (see `compare --help`)

Each (task, train size) is one comparison (`compare` on the base config with that task and size, and the
task's `overrides` merged in); every run of every comparison goes to the executor at once, so a cluster
works on all of them. Each comparison's tables go into `<out>/<task>-<size>/` (as `compare` writes
them), plus `index.md` and `index.csv` (every comparison's summary rows) in `<out>` (--out, default
`<runs root>/sweeps/<time>`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HELP = "run comparisons over tasks x train sizes x methods x seeds from one YAML file, with an index"
FIELDS = ("base", "tasks", "train_sizes", "methods", "seeds", "ablations", "node_runs_dir")
TASK_FIELDS = ("task", "train_sizes", "overrides")


def add_arguments(parser) -> None:
    from pada.commands.compare import add_run_arguments

    parser.add_argument("--config", required=True, help="the sweep's YAML file (see configs/sweep-example.yaml)")
    parser.add_argument("--out", default=None, help="output directory (default: <runs root>/sweeps/<time>)")
    add_run_arguments(parser)


@dataclass
class Cell:
    """One comparison of the sweep: a task at a train size."""

    task: str
    train_size: int
    config: Any = None  # the base config with this task and size (a RunConfig that knows the sweep's lines)
    plan: list = field(default_factory=list)  # its PlannedRuns

    @property
    def key(self) -> str:
        return f"{self.task}-{self.train_size}"


@dataclass
class Sweep:
    source: Path
    cells: list[Cell]
    node_runs_dir: str | None = None


class _Spec:
    """The sweep file's data with the line of every key and list item, for one-line errors."""

    def __init__(self, path: Path, data: dict[str, Any], node):
        self.path, self.data, self.lines = path, data, _lines(node)

    def error(self, name: str, message: str):
        from pada.config import ConfigError

        probe = name  # the line of the field, else of the nearest list item or section holding it
        while probe and probe not in self.lines:
            probe = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", probe) if re.search(r"[.\[]", probe) else ""
        line = self.lines.get(probe)
        return ConfigError(f"{self.path}{f' line {line}' if line else ''}: {name}: {message}")

    def items(self, value: Any, name: str) -> list:
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return [value]  # one value stands for a list of one
        if not isinstance(value, list) or not value:
            raise self.error(name, f"expected a non-empty list, got {value!r}")
        return value

    def sizes(self, value: Any, name: str) -> list[int]:
        sizes = self.items(value, name)
        for k, size in enumerate(sizes):
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise self.error(f"{name}[{k}]", f"expected a whole number >= 1, got {size!r}")
        return sizes


def _lines(node, prefix: str = "") -> dict[str, int]:
    """{"tasks[2].train_sizes": 7, ...}: the 1-based line of every mapping key and list item."""
    import yaml

    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = f"{prefix}{'.' if prefix else ''}{key.value}"
            lines[name] = key.start_mark.line + 1
            lines.update(_lines(value, name))
    elif isinstance(node, yaml.SequenceNode):
        for k, item in enumerate(node.value):
            lines[f"{prefix}[{k}]"] = item.start_mark.line + 1
            lines.update(_lines(item, f"{prefix}[{k}]"))
    return lines


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def _base_config(spec: _Spec) -> dict[str, Any]:
    from pada.config import from_dict, load_config

    base = spec.data.get("base")
    if isinstance(base, str):
        return load_config(spec.path.parent / base).to_dict()  # its errors name its own file and line
    if isinstance(base, dict):
        lines = {name.removeprefix("base."): line for name, line in spec.lines.items() if name.startswith("base.")}
        return from_dict(base, str(spec.path), lines).to_dict()
    raise spec.error("base", f"expected a run config file or an inline run config, got {base!r}")


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file and expand it into its comparisons' planned runs. Every problem is one
    ConfigError naming the file, line and field; the run configs are checked like `compare` checks one."""
    from pada.comparison import plan_runs
    from pada.config import METHODS, from_dict, read_yaml_mapping

    path = Path(path)
    data, node = read_yaml_mapping(path, "sweep config")
    spec = _Spec(path, data or {}, node)
    unknown = [key for key in spec.data if key not in FIELDS]
    if unknown:
        raise spec.error(unknown[0], f"unknown field (expected {', '.join(FIELDS)})")
    for required in ("base", "tasks", "train_sizes", "methods"):
        if required not in spec.data:
            raise spec.error(required, "missing (a sweep needs base, tasks, train_sizes and methods)")
    base = _base_config(spec)
    methods = spec.items(spec.data["methods"], "methods")
    for k, method in enumerate(methods):
        if method not in METHODS:
            raise spec.error(f"methods[{k}]", f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    seeds = spec.data.get("seeds", 1)
    if isinstance(seeds, list) and seeds:
        bad = next((k for k, seed in enumerate(seeds) if isinstance(seed, bool) or not isinstance(seed, int)), None)
        if bad is not None:
            raise spec.error(f"seeds[{bad}]", f"expected a whole number, got {seeds[bad]!r}")
    elif isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise spec.error("seeds", f"expected a number of seeds >= 1 or a list of seeds, got {seeds!r}")
    ablations = spec.data.get("ablations", False)
    if not isinstance(ablations, bool):
        raise spec.error("ablations", f"expected true or false, got {ablations!r}")
    sizes = spec.sizes(spec.data["train_sizes"], "train_sizes")

    cells = []
    for k, entry in enumerate(spec.items(spec.data["tasks"], "tasks")):
        where = f"tasks[{k}]"
        entry = {"task": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or not isinstance(entry.get("task"), str):
            raise spec.error(where, f"expected a task name or a mapping with `task`, got {entry!r}")
        extra = [key for key in entry if key not in TASK_FIELDS]
        if extra:
            raise spec.error(f"{where}.{extra[0]}", f"unknown field (expected {', '.join(TASK_FIELDS)})")
        overrides = entry.get("overrides", {})
        if not isinstance(overrides, dict):
            raise spec.error(f"{where}.overrides", f"expected a mapping of run config fields, got {overrides!r}")
        for n, size in enumerate(spec.sizes(entry["train_sizes"], f"{where}.train_sizes")
                                 if "train_sizes" in entry else sizes):
            size_at = f"{where}.train_sizes[{n}]" if "train_sizes" in entry else f"train_sizes[{n}]"
            lines = {name.removeprefix(f"{where}.overrides."): line for name, line in spec.lines.items()
                     if name.startswith(f"{where}.overrides.")}
            lines.update({"task": spec.lines.get(where, 0), "data.train_size": spec.lines.get(size_at, 0)})
            merged = _merge(base, overrides)
            merged = dict(merged, task=entry["task"], data={**merged.get("data", {}), "train_size": size})
            config = from_dict(merged, str(path), lines)
            cell = Cell(entry["task"], size, config)
            cell.plan = plan_runs(config, methods, ablations, seeds, tag=f"{cell.task} n={size}")
            cells.append(cell)
    keys = [cell.key for cell in cells]
    twice = next((key for key in keys if keys.count(key) > 1), None)
    if twice:
        raise spec.error("tasks", f"{twice} appears twice; each task and train size is one comparison")
    node_runs_dir = spec.data.get("node_runs_dir")
    if node_runs_dir is not None and not isinstance(node_runs_dir, str):
        raise spec.error("node_runs_dir", f"expected a path, got {node_runs_dir!r}")
    return Sweep(path, cells, node_runs_dir)


def write_index(sweep: Sweep, results_by_cell: dict[str, list], summaries_by_cell: dict[str, list],
                out: Path) -> tuple[Path, Path]:
    """`index.md` (one line per comparison: its table, how many runs failed) and `index.csv` (every
    comparison's summary rows, with its task, train size and folder)."""
    import csv

    from pada.comparison import SUMMARY_COLUMNS, summary_record

    lines = [f"Sweep {sweep.source}: {len(sweep.cells)} comparisons", ""]
    rows = []
    for cell in sweep.cells:
        results = results_by_cell[cell.key]
        failed = sum(1 for result in results if result.error)
        table = f"[{cell.key}/comparison.md]({cell.key}/comparison.md)" if summaries_by_cell[cell.key] else "no table"
        lines.append(f"- {cell.task}, {cell.train_size} training examples: {table}; {len(results)} runs"
                     + (f", {failed} failed" if failed else ""))
        rows += [{"task": cell.task, "train_size": cell.train_size, "comparison": cell.key, **summary_record(s)}
                 for s in summaries_by_cell[cell.key]]
    markdown = out / "index.md"
    markdown.write_text("\n".join(lines) + "\n", encoding="utf-8")
    csv_path = out / "index.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["task", "train_size", "comparison", *SUMMARY_COLUMNS])
        writer.writeheader()
        writer.writerows(rows)
    return markdown, csv_path


def run(args) -> int:
    import time

    from pada.commands.common import check_output_dir
    from pada.commands.compare import executor_from, report_failures
    from pada.comparison import execute_plan, write_results
    from pada.config import preflight
    from pada.store import runs_root

    sweep = load_sweep(args.config)
    executor = executor_from(args, node_runs_dir=sweep.node_runs_dir)
    for cell in sweep.cells:
        preflight(cell.config)  # every task and size checks out before any run directory is created
    if args.out:
        out = check_output_dir(args.out, "--out", force=True)  # tables and index are rewritten in place
    else:
        out = runs_root(args.runs_root) / "sweeps" / time.strftime("%Y%m%d-%H%M%S")
    plan = [planned for cell in sweep.cells for planned in cell.plan]
    results = execute_plan(plan, runs_root=args.runs_root, reuse=not args.fresh, executor=executor)
    by_cell, summaries, start = {}, {}, 0
    for cell in sweep.cells:
        by_cell[cell.key] = results[start:start + len(cell.plan)]
        start += len(cell.plan)
        _, _, summaries[cell.key] = write_results(by_cell[cell.key], out / cell.key, args.runs_root)
    markdown, csv_path = write_index(sweep, by_cell, summaries, Path(out))
    print(markdown.read_text(encoding="utf-8"))
    print(f"wrote {markdown} and {csv_path}")
    return report_failures(results)
