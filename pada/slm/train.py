"""LoRA fine-tuning of the small language model on chat conversations.

Every PaDA iteration re-fine-tunes from the base model on the grown training
set (benchmark examples + accepted synthetic samples), so this module only
ever starts from a base model: no resuming from an adapter.

Input is a list of conversations (`list[Message]`, user + assistant turns);
the loss is computed ONLY on assistant tokens: prompt tokens get the label
-100, with the boundary found through the chat template itself (prompt with
generation prompt vs. the full conversation), so what the model learns to emit
is exactly what `pada.slm.generate` asks it for.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pada.errors import PadaError
from pada.records import Message
from pada.slm.config import ALL_LINEAR, LoRAConfig

IGNORE_INDEX = -100  # label value the loss skips
SUMMARY_FILE = "training_summary.json"

ProgressFn = Callable[[int, int], None]  # (optimiser steps done, total steps)


@dataclass
class TrainResult:
    adapter_dir: Path  # loadable with PeftModel.from_pretrained(base, adapter_dir)
    n_examples: int  # conversations actually trained on
    n_skipped: int  # conversations with no assistant token left after truncation
    losses: list[dict[str, float]] = field(default_factory=list)  # {"step", "epoch", "loss"} per logging step
    train_seconds: float = 0.0
    tokens_per_second: float = 0.0  # non-padding tokens through the model per second
    summary: dict[str, Any] = field(default_factory=dict)  # what training_summary.json holds

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1]["loss"] if self.losses else None


# ---------------------------------------------------------------- data

def render(tokenizer, messages: Sequence[Message], add_generation_prompt: bool = False) -> list[int]:
    """Token ids of `messages` through the tokenizer's chat template (the template writes the special tokens)."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def tokenize_conversation(tokenizer, messages: Sequence[Message], max_seq_len: int) -> dict[str, list[int]] | None:
    """input_ids + labels where only assistant turns carry labels; None if no assistant token fits.

    For each assistant turn i, tokens from len(render(turns[:i], generation prompt))
    to len(render(turns[:i+1])) are that turn's reply (content + end-of-turn token).
    """
    input_ids = render(tokenizer, messages)
    labels = [IGNORE_INDEX] * len(input_ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = _common_prefix_length(render(tokenizer, messages[:i], add_generation_prompt=True), input_ids)
        end = len(render(tokenizer, messages[: i + 1]))
        labels[start:end] = input_ids[start:end]
    input_ids, labels = input_ids[:max_seq_len], labels[:max_seq_len]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def _common_prefix_length(prefix: list[int], full: list[int]) -> int:
    """Length of the shared start; equals len(prefix) unless BPE merged across the turn boundary."""
    n = 0
    for a, b in zip(prefix, full):
        if a != b:
            break
        n += 1
    return n


# ---------------------------------------------------------------- training

def finetune(base_model: str | Path | None, conversations: Sequence[Sequence[Message]], config: LoRAConfig | None = None,
             out_dir: str | Path = "adapter", on_progress: ProgressFn | None = None) -> TrainResult:
    """Fine-tune a LoRA adapter on `conversations` and save it to `out_dir` (+ training_summary.json).

    base_model: alias (`smollm2-135m`, default when None), local checkpoint or hub id.
    Cost: epochs * len(conversations) / batch_size optimiser steps. SmolLM2-135M on the 2-core CPU
    (bf16): 300 ARC examples x 1 epoch = 38 steps, 32.7k tokens: 372 s at 88 tokens/s with the CPU
    shared (load 5-7); MEASURED.md's idle figure, ~245 tokens/s, would make it ~2.5 min.
    """
    from transformers import DataCollatorForSeq2Seq, Trainer, set_seed

    from pada.bundled import resolve_model
    from pada.slm.device import resolve_device, resolve_dtype

    config = config or LoRAConfig()
    if not conversations:
        raise PadaError("nothing to fine-tune on: the training set is empty")
    out_dir = Path(out_dir)
    model_path = resolve_model(base_model)
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    tokenizer = _training_tokenizer(model_path)
    dataset = [row for row in (tokenize_conversation(tokenizer, conv, config.max_seq_len) for conv in conversations)
               if row is not None]
    if not dataset:
        raise PadaError("no conversation has an assistant turn to learn from (check roles or max_seq_len)")

    set_seed(config.seed)  # before the adapter is created: LoRA A matrices are random
    model = _lora_model(model_path, config, dtype)
    with tempfile.TemporaryDirectory(prefix="pada-trainer-") as scratch:
        trainer = Trainer(
            model=model,
            args=_training_arguments(config, device, scratch),
            train_dataset=dataset,
            data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX),
            callbacks=[_progress_callback(on_progress)] if on_progress else None,
        )
        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
    model.save_pretrained(out_dir)

    state = trainer.state
    losses = [{"step": entry["step"], "epoch": entry.get("epoch", 0.0), "loss": entry["loss"]}
              for entry in state.log_history if "loss" in entry]
    tokens_seen = state.num_input_tokens_seen or sum(len(row["input_ids"]) for row in dataset) * config.epochs
    result = TrainResult(adapter_dir=out_dir, n_examples=len(dataset), n_skipped=len(conversations) - len(dataset),
                         losses=losses, train_seconds=train_seconds,
                         tokens_per_second=tokens_seen / max(train_seconds, 1e-9))
    result.summary = _summary(result, config, base_model, model_path, device, dtype, state.global_step,
                              int(tokens_seen))
    (out_dir / SUMMARY_FILE).write_text(json.dumps(result.summary, indent=2))
    return result


def _training_tokenizer(model_path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.padding_side = "right"  # the forward pass numbers positions from 0 at the left, so pad on the right
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _summary(result: TrainResult, config: LoRAConfig, base_model, model_path: str, device: str, dtype,
             steps: int, tokens_seen: int) -> dict[str, Any]:
    """What training_summary.json holds: enough to reproduce the run and to plot its loss curve."""
    import torch

    return {
        "base_model": str(base_model) if base_model else None, "resolved_base_model": model_path,
        "config": config.to_dict(), "device": device, "dtype": str(dtype).removeprefix("torch."),
        "n_examples": result.n_examples, "n_skipped": result.n_skipped, "steps": steps, "losses": result.losses,
        "train_seconds": round(result.train_seconds, 2), "tokens_seen": tokens_seen,
        "tokens_per_second": round(result.tokens_per_second, 1), "torch_threads": torch.get_num_threads(),
    }


def _lora_model(model_path: str, config: LoRAConfig, dtype):
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    model.config.use_cache = False  # no KV cache during training
    peft_config = PeftLoraConfig(
        r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout, task_type="CAUSAL_LM",
        target_modules=ALL_LINEAR if config.target_modules == ALL_LINEAR else list(config.target_modules),
    )
    try:
        return get_peft_model(model, peft_config)
    except ValueError as err:  # e.g. a target module name the architecture lacks
        raise PadaError(f"cannot attach LoRA to {model_path}: {err}") from None


def _training_arguments(config: LoRAConfig, device: str, output_dir: str):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float < 1 is a ratio of the total steps
        weight_decay=config.weight_decay,
        logging_steps=config.logging_steps,
        save_strategy="no",  # the adapter is saved once, by us
        report_to="none",
        seed=config.seed,
        data_seed=config.seed,
        train_sampling_strategy="group_by_length",  # similar lengths per batch: less padding, faster on CPU
        include_num_input_tokens_seen="non_padding",
        use_cpu=device == "cpu",
        remove_unused_columns=False,
        dataloader_pin_memory=device != "cpu",
        disable_tqdm=False,
    )


def _progress_callback(on_progress: ProgressFn):
    """A TrainerCallback forwarding the step counter to a plain `on_progress(step, total)` function."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            on_progress(state.global_step, state.max_steps)

    return ProgressCallback()
