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
from pada.errors import PadaError
from pada.llm.client import LLMConfig
from pada.slm.config import LoRAConfig

METHODS = ("pada", "vanilla", "auggpt", "llms_as_instructors")
PAUSE_POINTS = ("strategies", "qc")


class ConfigError(PadaError):
    """A run config that cannot be used; the message names the file and field."""


@dataclass
class DataConfig:
    """Which examples the SLM trains and is evaluated on (paper: train 1000/600/300, validation and test 500)."""

    train_size: int = field(default=300, metadata={"help": "training subset size; subsets are nested for a seed"})
    val_size: int = field(default=500, metadata={"help": "fixed validation set (paper: 500, or all if fewer)"})
    test_size: int | None = field(default=500, metadata={"help": "fixed test subset; null = the whole test set"})
    eval_train_limit: int | None = field(
        default=None, metadata={"help": "evaluate at most this many training examples for training failures; null = all"})


@dataclass
class SLMConfig:
    """The small model being improved."""

    model: str = field(default="smollm2-135m", metadata={"help": "bundled alias, local path or Hugging Face id"})
    eval_batch_size: int = field(default=16, metadata={"help": "prompts per batched greedy generation"})
    train: LoRAConfig = field(default_factory=LoRAConfig)


@dataclass
class AblationConfig:
    """The paper's ablations (Table 2): switch one part of PaDA-Agent off."""

    no_patterns: bool = field(default=False, metadata={"help": "skip the pattern-guided branch"})
    no_train_errors: bool = field(default=False, metadata={"help": "skip the error-based branch"})
    no_qc: bool = field(default=False, metadata={"help": "accept every synthetic sample without judging"})


def _local_llm() -> LLMConfig:
    return LLMConfig(model="local/qwen2.5-coder-0.5b", concurrency=4)


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
    llm: LLMConfig = field(default_factory=_local_llm)  # analysis, patterns, strategies, generation
    judge: LLMConfig = field(default_factory=_local_llm)  # quality control (paper: a different model)
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
            raise ConfigError(f"method: expected one of {', '.join(METHODS)}, got {self.method!r}")
        unknown = [p for p in self.pause_after if p not in PAUSE_POINTS]
        if unknown:
            raise ConfigError(f"pause_after: unknown stage {unknown[0]!r} (choose from {', '.join(PAUSE_POINTS)})")
        if self.iterations < 1:
            raise ConfigError(f"iterations: must be >= 1, got {self.iterations}")

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)


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


def from_dict(data: dict[str, Any] | None, source: str = "config") -> RunConfig:
    """Build a RunConfig from plain data (parsed YAML or a stored run's JSON)."""
    return _build(RunConfig, data or {}, source, "")


def load_config(path: str | Path) -> RunConfig:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level")
    return from_dict(data, str(path))


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{source}: unknown field '{prefix}{key}' (known: {', '.join(known)})")
    values = {key: _convert(hints[key], value, source, f"{prefix}{key}") for key, value in data.items()}
    try:
        return cls(**values)
    except (PadaError, TypeError, ValueError) as err:  # a cross-field rule in the section's __post_init__
        where = f"{prefix.rstrip('.')}: " if prefix else ""
        raise ConfigError(f"{source}: {where}{err}") from None


def _convert(hint: Any, value: Any, source: str, name: str) -> Any:
    """Check `value` against the field's type hint; nested dataclasses are built recursively."""
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, source, f"{name}.")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, source, name)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if hint is Any:
        return value
    if origin is list:
        if isinstance(value, str):  # "a,b" is accepted for list fields, as on the command line
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {name}: expected a list, got {value!r}")
        return [_convert(args[0], v, source, name) for v in value] if args else value
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {name}: expected a mapping, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {name}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {name}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {name}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {name}: expected text, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {name}: expected a path, got {value!r}")
        return Path(value)
    return value
