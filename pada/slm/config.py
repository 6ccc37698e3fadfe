"""LoRA fine-tuning settings: one dataclass that feeds the trainer, the CLI and the saved run summary.

Defaults are the paper's (Llama 3.2 1B, one A10G): LoRA r = alpha = 32,
dropout 0.05, lr 2e-4, 5 epochs, all linear projections. Batch size and
sequence length are ours, sized for a 2-core CPU (see shared/MEASURED.md:
~170-250 training tokens/s for SmolLM2-135M, so a step of 8 x 200 tokens takes
6-10 s).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

DTYPES = ("auto", "float32", "bfloat16")
DEVICES = ("auto", "cpu", "cuda")
ALL_LINEAR = "all-linear"  # peft shorthand: every Linear except the output head


@dataclass
class LoRAConfig:
    """Parameters that control the adapter, the optimisation and the hardware.

    Adapter:      r, alpha, dropout, target_modules
    Optimisation: epochs, learning_rate, batch_size, grad_accum, warmup_ratio, lr_scheduler,
                  weight_decay, max_seq_len, seed
    Hardware:     dtype, device, activation_checkpointing
    Bookkeeping:  logging_steps
    """

    r: int = field(default=32, metadata={"help": "LoRA rank (paper: 32)"})
    alpha: int = field(default=32, metadata={"help": "LoRA alpha; scale = alpha / r (paper: 32)"})
    dropout: float = field(default=0.05, metadata={"help": "LoRA dropout (paper: 0.05)"})
    target_modules: str | list[str] = field(
        default=ALL_LINEAR,
        metadata={"help": "modules that get adapters: 'all-linear' (paper: all projections) or a list "
                          "such as q_proj,k_proj,v_proj,o_proj (~15% faster on CPU, fewer parameters)"})
    epochs: float = field(default=5.0, metadata={"help": "passes over the training set (paper: 5)"})
    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate (paper: 2e-4)"})
    batch_size: int = field(default=8, metadata={"help": "sequences per optimiser micro-step"})
    grad_accum: int = field(default=1, metadata={"help": "micro-steps per optimiser step"})
    warmup_ratio: float = field(default=0.03, metadata={"help": "fraction of steps with linear warm-up"})
    lr_scheduler: str = field(default="linear", metadata={"help": "transformers scheduler name"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_seq_len: int = field(
        default=1024,
        metadata={"help": "tokens per conversation; longer ones are cut at the end (SQuAD contexts fit)"})
    seed: int = field(default=0, metadata={"help": "seeds adapter init, data order and dropout"})
    dtype: str = field(
        default="auto",
        metadata={"help": "'auto' = bfloat16 where the hardware has it (CUDA with bf16, CPUs with avx512_bf16/"
                          "AMX: 1.3-1.5x faster, finite losses), else float32"})
    device: str = field(default="auto", metadata={"help": "'auto' = cuda when available, else cpu"})
    activation_checkpointing: bool = field(
        default=False,
        metadata={"help": "recompute activations in the backward pass: less memory for longer sequences or larger "
                          "batches, for one extra forward pass per step"})
    logging_steps: int = field(default=5, metadata={"help": "record (and print) the training loss every N steps"})

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, str) and self.target_modules != ALL_LINEAR:
            self.target_modules = [name.strip() for name in self.target_modules.split(",") if name.strip()]
        problems = []
        for name in ("r", "alpha", "batch_size", "grad_accum", "max_seq_len", "logging_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if not (0 < self.epochs < math.inf) or not (0 < self.learning_rate < math.inf):  # also refuses nan
            problems.append(f"epochs and learning_rate must be finite and > 0 (got {self.epochs}, {self.learning_rate})")
        if not 0 <= self.weight_decay < math.inf:
            problems.append(f"weight_decay must be finite and >= 0 (got {self.weight_decay})")
        if not 0 <= self.dropout < 1 or not 0 <= self.warmup_ratio < 1:
            problems.append("dropout and warmup_ratio must be in [0, 1)")
        if self.dtype not in DTYPES:
            problems.append(f"dtype must be one of {DTYPES} (got {self.dtype!r})")
        if self.device not in DEVICES:
            problems.append(f"device must be one of {DEVICES} (got {self.device!r})")
        if problems:
            from pada.errors import PadaError

            raise PadaError("bad LoRA config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LoRAConfig:
        """Build from a dict, ignoring keys this version does not know (older/newer saved runs)."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def check_model(name: str | None) -> None:
    """Fail fast when the SLM `name` cannot be loaded, before anything is created or trained.

    Accepted: a bundled alias whose package is installed, a local model directory
    (with config.json), or a Hugging Face id that is in the local cache or, when the
    hub is reachable, exists there. Raises PadaError with one line that starts with
    the name; callers put the file/line/field or flag in front.
    """
    from pathlib import Path

    from pada import bundled
    from pada.errors import PadaError

    text = str(name or bundled.DEFAULT_SLM).strip()
    aliases = (bundled.SMOLLM2, bundled.QWEN_CODER)
    if text.lower() in aliases:
        try:
            bundled.check_bundled_model(text)
        except PadaError as err:
            raise PadaError(f"{text!r}: {err}") from None
        return
    path = Path(text).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise PadaError(f"{text!r}: not a model directory (no config.json in it)")
        return
    choices = f"use a bundled alias ({', '.join(aliases)}), a local model directory or a Hugging Face id"
    if text.startswith(("/", "./", "../", "~")) or not _HUB_ID.match(text):
        raise PadaError(f"{text!r}: no such model directory; {choices}")
    reason = _hub_model_problem(text)
    if reason:
        raise PadaError(f"{text!r}: not a bundled alias or local directory, and {reason}; {choices}")


def _hub_model_problem(repo_id: str) -> str | None:
    """Why the hub model `repo_id` cannot be loaded (None: it is cached, or the hub says it exists)."""
    import os

    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return "huggingface_hub is not installed"
    try:
        if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
            return None
    except Exception:  # noqa: BLE001 - an odd id or cache layout: ask the hub below
        pass
    if any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
           for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return "it is not in the Hugging Face cache (HF_HUB_OFFLINE is set)"
    from pada.tasks.hub import _unreachable_reason

    unreachable = _unreachable_reason()
    if unreachable:
        return f"it is not in the Hugging Face cache and the hub is unreachable ({unreachable})"
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.utils import RepositoryNotFoundError

        HfApi().model_info(repo_id, timeout=10)
    except RepositoryNotFoundError:
        return "the Hugging Face hub has no such model (or it is private)"
    except Exception:  # noqa: BLE001 - a flaky network is not the user's mistake; loading will tell
        return None
    return None
