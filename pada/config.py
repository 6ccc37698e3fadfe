"""RunConfig: one YAML file that composes every stage's config.

Each section maps onto the Config dataclass that sits next to its stage's code
(`LoRAConfig` in `pada/slm/config.py`, `ErrorAnalysisConfig` in
`pada/agents/error_analysis.py`, ...), so defaults and help texts live in one
place. Every field has a default; an unknown field or a value of the wrong
type is an error that names the field (`slm.train.epochs: expected a number,
got 'five'`). The resolved config is saved with every run.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pada.agents.budget import BudgetConfig
from pada.agents.clustering import ClusteringConfig
from pada.agents.error_analysis import ErrorAnalysisConfig
from pada.agents.generation import GenerationConfig
from pada.agents.leakage import LeakageConfig
from pada.agents.patterns import PatternConfig
from pada.agents.quality import QCConfig
from pada.agents.strategies import StrategyConfig
from pada.errors import PadaError, read_user_text
from pada.llm.client import LLMConfig
from pada.slm.config import LoRAConfig

METHODS = ("pada", "vanilla", "auggpt", "llms_as_instructors")
PAUSE_POINTS = ("strategies", "qc")


class ConfigError(PadaError):
    """A run config that cannot be used; the message names the file, line and field.

    `field` (relative to the section that raises it) is set by a section's
    `__post_init__`; the loader puts the file, line and full field name in front.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass
class DataConfig:
    """Which examples the SLM trains and is evaluated on (paper: train 1000/600/300, validation and test 500)."""

    train_size: int = field(default=300, metadata={"help": "training subset size; subsets are nested for a seed"})
    val_size: int = field(default=500, metadata={"help": "fixed validation set (paper: 500, or all if fewer)"})
    test_size: int | None = field(default=500, metadata={"help": "fixed test subset; null = the whole test set"})
    eval_train_limit: int | None = field(
        default=None, metadata={"help": "evaluate at most this many training examples for training failures; null = all"})

    def __post_init__(self) -> None:
        for name in ("train_size", "val_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"must be >= 1, got {getattr(self, name)}", field=name)
        if self.test_size is not None and self.test_size < 1:
            raise ConfigError(f"must be >= 1 (or null for the whole test set), got {self.test_size}", field="test_size")
        if self.eval_train_limit is not None and self.eval_train_limit < 0:
            raise ConfigError(f"must be >= 0 (or null for all), got {self.eval_train_limit}", field="eval_train_limit")


@dataclass
class SLMConfig:
    """The small model being improved, and what evaluates it (transformers in process, or a vLLM server)."""

    model: str = field(default="smollm2-135m", metadata={"help": "bundled alias, local path or Hugging Face id"})
    eval_batch_size: int | str = field(
        default="auto", metadata={"help": "prompts generated together (hf) or requests in flight (vllm); 'auto' = "
                                          "16 on a CPU, 128-256 on a GPU by model size, 64 requests for vllm; on a CPU a "
                                          "batch also stops at 4096 tokens (rows x (longest prompt + new tokens))"})
    backend: str = field(default="hf", metadata={"help": "evaluation backend: hf (in process) or vllm (a server)"})
    api_base: str | None = field(
        default=None, metadata={"help": "vllm only: the server's OpenAI base, e.g. http://localhost:8000/v1 "
                                        "(started with --enable-lora --max-lora-rank 32)"})
    train: LoRAConfig = field(default_factory=LoRAConfig)

    def __post_init__(self) -> None:
        from pada.slm.backends import AUTO, BACKENDS

        if isinstance(self.eval_batch_size, str) and self.eval_batch_size != AUTO:
            raise ConfigError(f"must be 'auto' or an integer >= 1, got {self.eval_batch_size!r}",
                              field="eval_batch_size")
        if isinstance(self.eval_batch_size, int) and self.eval_batch_size < 1:
            raise ConfigError(f"must be >= 1, got {self.eval_batch_size}", field="eval_batch_size")
        if not self.model.strip():
            raise ConfigError("must name a model, e.g. smollm2-135m", field="model")
        if self.backend not in BACKENDS:
            raise ConfigError(f"expected one of {', '.join(BACKENDS)}, got {self.backend!r}", field="backend")
        if self.backend == "vllm" and not (self.api_base or "").strip():
            raise ConfigError("the vllm backend needs the server's address, e.g. http://localhost:8000/v1",
                              field="api_base")


@dataclass
class AblationConfig:
    """The paper's ablations (Table 2): switch one part of PaDA-Agent off."""

    no_patterns: bool = field(default=False, metadata={"help": "skip the pattern-guided branch"})
    no_train_errors: bool = field(default=False, metadata={"help": "skip the error-based branch"})
    no_qc: bool = field(default=False, metadata={"help": "accept every synthetic sample without judging"})


def _local_generator() -> LLMConfig:
    return LLMConfig(model="local/qwen2.5-coder-1.5b", concurrency=4)


def _local_judge() -> LLMConfig:
    """The generator's model. The paper judges with another family (against self-enhancement bias); offline
    the only other bundled model is the 0.5B sibling, and the judge check (benchmarks/bench_judge.py, SQuAD,
    answer check on) picked the 1.5B over it: the 0.5B accepted 5 of 12 real training examples shown as
    samples, the 1.5B 10 of 12; both scored every bad sample 8-10, so only the blind answer check catches
    anything (README)."""
    return LLMConfig(model="local/qwen2.5-coder-1.5b", concurrency=4)


@dataclass
class RunConfig:
    """Everything a run needs.

    `iterations` counts fine-tuning rounds: iteration 1 trains on the training subset alone, and
    every later one adds the samples accepted in the round before (so 2 iterations = one
    augmentation). Vanilla fine-tuning runs a single round: its training set never changes.
    """

    task: str = field(default="arc_challenge", metadata={"help": "task name (python -m pada tasks)"})
    task_options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "extra task options, e.g. {path: my.jsonl, scorer: number} for custom"})
    data_dir: str | None = field(default=None, metadata={"help": "benchmark data root; null = $PADA_DATA_DIR or ../shared/data"})
    method: str = field(default="pada", metadata={"help": f"one of {METHODS}"})
    iterations: int = field(default=3, metadata={"help": "fine-tuning rounds (paper: 3)"})
    analyse_last_iteration: bool = field(
        default=True, metadata={"help": "also analyse and cluster the last round's failures (shows what remains)"})
    seed: int = field(default=0, metadata={"help": "seeds splits, subsampling, clustering and training"})
    pause_after: list[str] = field(
        default_factory=list, metadata={"help": f"stop for human review after these stages: {PAUSE_POINTS}"})
    data: DataConfig = field(default_factory=DataConfig)
    slm: SLMConfig = field(default_factory=SLMConfig)
    llm: LLMConfig = field(default_factory=_local_generator)  # analysis, patterns, strategies, generation
    judge: LLMConfig = field(default_factory=_local_judge)  # quality control: a different model
    analysis: ErrorAnalysisConfig = field(default_factory=ErrorAnalysisConfig)
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    patterns: PatternConfig = field(default_factory=PatternConfig)
    strategies: StrategyConfig = field(default_factory=StrategyConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    qc: QCConfig = field(default_factory=QCConfig)
    leakage: LeakageConfig = field(default_factory=LeakageConfig)
    ablations: AblationConfig = field(default_factory=AblationConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"expected one of {', '.join(METHODS)}, got {self.method!r}", field="method")
        unknown = [p for p in self.pause_after if p not in PAUSE_POINTS]
        if unknown:
            raise ConfigError(f"unknown stage {unknown[0]!r} (choose from {', '.join(PAUSE_POINTS)})",
                              field="pause_after")
        if self.iterations < 1:
            raise ConfigError(f"must be >= 1, got {self.iterations}", field="iterations")
        if not self.task.strip():
            raise ConfigError("must name a task (python -m pada tasks)", field="task")

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def where(self, name: str) -> str:
        """`run.yaml line 4: data.train_size` (or `run.yaml: data.train_size` for a default): for messages."""
        return _at(getattr(self, "_source", "config"), getattr(self, "_lines", {}), name)

    def locate(self, name: str) -> str:
        """`run.yaml line 4` (the line of field `name`), or just the file when it is not in it."""
        return _loc(getattr(self, "_source", "config"), getattr(self, "_lines", {}), name)


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


def from_dict(data: dict[str, Any] | None, source: str = "config", lines: dict[str, int] | None = None) -> RunConfig:
    """Build a RunConfig from plain data (parsed YAML or a stored run's JSON).

    `lines`: the line of each dotted field name in the source file, so errors can name it.
    """
    lines = lines or {}
    config = _build(RunConfig, data or {}, source, "", lines)
    config._source, config._lines = source, lines
    return config


def load_config(path: str | Path) -> RunConfig:
    """Read and check a YAML run config; every problem is one ConfigError naming the file, line and field."""
    data, node = read_yaml_mapping(path)
    return from_dict(data, str(path), _field_lines(node) if isinstance(data, dict) else {})


def read_yaml_mapping(path: str | Path, what: str = "config") -> tuple[dict[str, Any] | None, Any]:
    """A YAML file's data (a mapping, or None when empty) and its node tree (for the lines of its fields);
    an unreadable file or bad YAML is one ConfigError naming the file and line."""
    import yaml

    path = Path(path)
    text = read_user_text(path, ConfigError, what)
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader) if isinstance(data, dict) else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply to read") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level")
    return data, node


def _field_lines(node, prefix: str = "") -> dict[str, int]:
    """{"data.train_size": 4, ...}: the 1-based line of every key of nested YAML mappings."""
    import yaml

    lines: dict[str, int] = {}
    if not isinstance(node, yaml.MappingNode):
        return lines
    for key_node, value_node in node.value:
        name = f"{prefix}{key_node.value}"
        lines.setdefault(name, key_node.start_mark.line + 1)
        lines.update({k: v for k, v in _field_lines(value_node, f"{name}.").items() if k not in lines})
    return lines


def _loc(source: str, lines: dict[str, int], name: str) -> str:
    """`file line N`, the line of `name` or of its nearest enclosing section (just `file` when unknown)."""
    parts = name.split(".") if name else []
    for depth in range(len(parts), 0, -1):
        line = lines.get(".".join(parts[:depth]))
        if line:
            return f"{source} line {line}"
    return source


def _at(source: str, lines: dict[str, int], name: str) -> str:
    """`file line N: name` (see `_loc`)."""
    return f"{_loc(source, lines, name)}: {name}" if name else source


def _build(cls: type, data: Any, source: str, prefix: str, lines: dict[str, int]) -> Any:
    section = prefix.rstrip(".")
    if not isinstance(data, dict):
        raise ConfigError(f"{_at(source, lines, section or 'top level')}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{_loc(source, lines, f'{prefix}{key}')}: unknown field '{prefix}{key}' "
                              f"(known: {', '.join(known)})")
    values = {key: _convert(hints[key], value, source, f"{prefix}{key}", lines) for key, value in data.items()}
    try:
        return cls(**values)
    except ConfigError as err:
        if err.field:  # the section named the field
            name = f"{prefix}{err.field}"
            raise ConfigError(f"{_at(source, lines, name)}: {err}") from None
        raise ConfigError(f"{_at(source, lines, section)}: {err}" if section else f"{source}: {err}") from None
    except (PadaError, TypeError, ValueError) as err:  # a cross-field rule in the section's __post_init__
        raise ConfigError(f"{_at(source, lines, section)}: {err}" if section else f"{source}: {err}") from None


def _convert(hint: Any, value: Any, source: str, name: str, lines: dict[str, int] | None = None) -> Any:
    """Check `value` against the field's type hint; nested dataclasses are built recursively."""
    lines = lines or {}
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, source, f"{name}.", lines)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, source, name, lines)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if hint is Any:
        return value
    if origin is list:
        if isinstance(value, str):  # "a,b" is accepted for list fields, as on the command line
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{_at(source, lines, name)}: expected a list, got {value!r}")
        return [_convert(args[0], v, source, name, lines) for v in value] if args else value
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{_at(source, lines, name)}: expected a mapping, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{_at(source, lines, name)}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{_at(source, lines, name)}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{_at(source, lines, name)}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{_at(source, lines, name)}: expected text, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{_at(source, lines, name)}: expected a path, got {value!r}")
        return Path(value)
    return value


def preflight(config: RunConfig) -> None:
    """Check what a run needs beyond the config's shape, BEFORE a run directory is created.

    The data directory (if one is named) exists, the task and its options are
    known, its source data reads cleanly, the training pool holds `data.train_size`
    examples (sizes are never clamped silently), validation and test pools are not
    empty, the SLM and a bundled embedder exist, and a vLLM server named for the SLM answers. Cost: reads the task's data once (the task object is
    cached, so the run reuses it). Raises ConfigError naming the file, line and field,
    or the data file's own TaskError (which names that file, line and field).
    """
    from pada.agents.clustering import check_embedder
    from pada.slm.config import check_model
    from pada.tasks import check_data_root, get_task
    from pada.tasks.base import TaskError

    try:
        check_data_root(config.data_dir, "data_dir")
    except TaskError as err:
        raise ConfigError(f"{config.locate('data_dir')}: {err}") from None
    try:
        task = get_task(config.task, data_dir=config.data_dir, **config.task_options)
    except TaskError as err:
        field = "task_options" if "option" in str(err) and config.task_options else "task"
        raise ConfigError(f"{config.where(field)}: {err}") from None
    pools = task.pools()  # a bad data line raises its own file/line/field error
    data = config.data
    if data.train_size > len(pools.train):
        fix = f"use at most {len(pools.train)}"
        if not pools.train:
            fix = "the task has nothing to train on" + (
                f": {task.path} has only validation/test lines; add lines with split 'train' or no split"
                if task.name == "custom" else "")
        default = "" if "data.train_size" in getattr(config, "_lines", {}) else " (the default)"
        raise ConfigError(f"{config.where('data.train_size')}: {data.train_size}{default} is more than the training "
                          f"pool of {config.task} ({len(pools.train)} examples); {fix}")
    for name, pool in (("validation", pools.validation), ("test", pools.test)):
        if not pool:
            raise ConfigError(f"{config.where('task')}: {config.task} has no {name} examples; a run needs some "
                              "to measure the SLM (give a custom file lines with split 'validation' / 'test')")
    try:
        check_model(config.slm.model)
    except PadaError as err:
        raise ConfigError(f"{config.where('slm.model')}: {err}") from None
    try:
        check_embedder(config.clustering.embedder)
    except PadaError as err:
        raise ConfigError(f"{config.where('clustering.embedder')}: {err}") from None
    if config.slm.backend == "vllm":
        from pada.slm.backends import check_vllm_server

        try:
            check_vllm_server(config.slm.api_base)
        except PadaError as err:
            raise ConfigError(f"{config.where('slm.api_base')}: {err}") from None
