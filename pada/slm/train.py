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

# Memory (issue 11): SmolLM2-135M, bf16, B=8 x T=384, r=32 all-linear used to keep ~6.1 GB for the backward pass:
# ~3.9 GB of float32 LoRA-dropout tensors (each of the 7 adapted projections per layer kept its input cast to
# float32 times a float32 dropout noise, and that product for lora_A's weight gradient) and 0.6 GB of float32
# log-softmax over the whole [B*T, 49,152] logits (plus ~1.4 GB of logits and their float32 copies at the end of
# the forward and start of the backward). `_LeanLossTrainer` computes logits only where a label is, and
# `_lean_lora` keeps only the layer's own input and a random-generator state per adapted projection. Same
# arithmetic, same random draws, so the same training result (tests/test_slm_memory.py).

IGNORE_INDEX = -100  # label value the loss skips
SUMMARY_FILE = "training_summary.json"
# Llama 3 chat templates write "Today Date: <date_string>" into the system turn, from the clock unless the caller
# passes one: training and evaluation prompts would then differ across days and across a resumed run. Every
# prompt goes through `render`, which passes this fixed date (the date Llama 3.1's own template falls back to).
CHAT_TEMPLATE_DATE = "26 Jul 2024"

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
    """Token ids of `messages` through the tokenizer's chat template (the template writes the special tokens).

    The one place prompts are rendered, for training, in-process generation and the vLLM backend alike.
    """
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt,
                                         date_string=CHAT_TEMPLATE_DATE)
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
    from transformers import DataCollatorForSeq2Seq, set_seed

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
        trainer = _LeanLossTrainer(
            model=model,
            args=_training_arguments(config, device, scratch),
            train_dataset=dataset,
            data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX),
            callbacks=[_progress_callback(on_progress)] if on_progress else None,
        )
        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
    writer = trainer.is_world_process_zero()  # under torchrun/accelerate only rank 0 writes the adapter and summary
    if writer:
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
    if writer:
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
        peft_model = get_peft_model(model, peft_config)
    except ValueError as err:  # e.g. a target module name the architecture lacks
        raise PadaError(f"cannot attach LoRA to {model_path}: {err}") from None
    _lean_lora(peft_model)
    return peft_model


def _training_arguments(config: LoRAConfig, device: str, output_dir: str):
    return _one_device_arguments_class()(
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
        # non-reentrant checkpointing works with frozen (LoRA) base weights; transformers turns on the input
        # embeddings' requires_grad so gradients reach the adapters through checkpointed frozen layers
        activation_checkpointing=config.activation_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if config.activation_checkpointing else None,
    )


def _one_device_arguments_class():
    """TrainingArguments that train on one device: the one the run was given.

    Outside torchrun/accelerate, transformers sets n_gpu = torch.cuda.device_count() and the Trainer then wraps the
    model in nn.DataParallel: the global batch becomes batch_size x N and evaluation stays on cuda:0. A run uses
    one device (cuda = the current CUDA device); several GPUs mean one launch per GPU, or torchrun, where
    transformers already sets n_gpu = 1 per process.
    """
    from functools import cached_property

    from transformers import TrainingArguments

    class OneDeviceArguments(TrainingArguments):
        @cached_property
        def _setup_devices(self):
            device = TrainingArguments._setup_devices.func(self)
            self._n_gpu = min(self._n_gpu, 1)
            return device

    return OneDeviceArguments


def _progress_callback(on_progress: ProgressFn):
    """A TrainerCallback forwarding the step counter to a plain `on_progress(step, total)` function."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            on_progress(state.global_step, state.max_steps)

    return ProgressCallback()


# ---------------------------------------------------------------- memory (issue 11)

def _LeanLossTrainer(*args, **kwargs):
    """A transformers Trainer whose causal-LM loss projects only the labelled positions onto the vocabulary.

    transformers' loss takes logits at all B*T positions ([B, T, V] in the model dtype, a float32 copy, a float32
    log-softmax kept for the backward, then float32 and model-dtype gradients of the same size). Here the hidden
    state at t is projected only where label t+1 is not IGNORE_INDEX (`logits_to_keep` with a boolean mask), and the
    loss is the same float32 cross-entropy: summed over those tokens and divided by the Trainer's
    `num_items_in_batch` (labelled tokens after the shift, over all accumulated micro-batches), or their mean
    without it, exactly as `ForCausalLMLoss` reduces.
    """
    from transformers import Trainer

    class LeanLossTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or "labels" not in inputs or self.label_smoother is not None \
                    or self.compute_loss_func is not None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs = dict(inputs)
            loss = labelled_token_loss(model, inputs.pop("labels"), num_items_in_batch, **inputs)
            if (self.args.average_tokens_across_devices and num_items_in_batch is not None
                    and self.accelerator.num_processes > 1):  # what Trainer.compute_loss does for its own loss
                loss = loss * self.accelerator.num_processes
            return loss

    return LeanLossTrainer(*args, **kwargs)


def labelled_token_loss(model, labels, num_items_in_batch=None, **inputs):
    """The causal-LM loss of `model` on `inputs`, with logits computed only at positions that predict a label."""
    import torch
    import torch.nn.functional as F

    targets = labels[:, 1:]  # position t predicts label t+1
    predicting = targets != IGNORE_INDEX
    keep = F.pad(predicting, (0, 1), value=False)  # [B, T] bool: hidden states to project
    logits = model(**inputs, logits_to_keep=keep).logits  # [N, V], N = labelled tokens
    loss = F.cross_entropy(logits.float(), targets[predicting].to(logits.device),
                           reduction="sum" if num_items_in_batch is not None else "mean")
    if num_items_in_batch is not None:
        loss = loss / (num_items_in_batch.to(loss.device) if torch.is_tensor(num_items_in_batch)
                       else num_items_in_batch)
    return loss


def _lean_lora(peft_model) -> int:
    """Give every plain LoRA Linear of `peft_model` a forward that keeps less for the backward pass; returns how many.

    peft computes `lora_B(lora_A(dropout(x.to(float32)))) * scaling`: on a bfloat16 model autograd then keeps, per
    adapted projection, the float32 dropout noise and the float32 dropped-out input (8 bytes per input element,
    7 projections per layer). `_LoraBranch` does the same operations in the same order with the same random
    draws, but keeps only x itself (usually kept anyway, shared by q/k/v and by gate/up) and the random-generator
    state, and redraws the dropout mask in the backward pass. Layers this does not cover (merged, DoRA and other
    variants, biases, non-CPU tensors, extra arguments) keep peft's forward.
    """
    from peft.tuners.lora.layer import Linear as LoraLinear
    from torch import nn

    patched = 0
    for module in peft_model.modules():
        if type(module) is not LoraLinear:
            continue
        plain = all(
            type(module.lora_A[name]) is nn.Linear and module.lora_A[name].bias is None
            and type(module.lora_B[name]) is nn.Linear and module.lora_B[name].bias is None
            and type(module.lora_dropout[name]) in (nn.Dropout, nn.Identity)
            and name not in module.lora_variant
            for name in module.lora_A)
        if plain:
            module.forward = _lean_forward(module, module.forward)
            patched += 1
    return patched


def _lean_forward(layer, peft_forward):
    from torch import nn

    def forward(x, *args, **kwargs):
        if (args or kwargs or layer.disable_adapters or layer.merged or x.device.type != "cpu"
                or any(name in layer.lora_variant for name in layer.active_adapters)):
            return peft_forward(x, *args, **kwargs)
        result = layer.base_layer(x)
        result_dtype = result.dtype
        cast = getattr(layer, "cast_input_dtype_enabled", True)
        for name in layer.active_adapters:
            if name not in layer.lora_A:
                continue
            dropout = layer.lora_dropout[name]
            p = float(dropout.p) if isinstance(dropout, nn.Dropout) and dropout.training else 0.0
            weight_a, weight_b = layer.lora_A[name].weight, layer.lora_B[name].weight
            result = result + _LoraBranch.apply(x, weight_a, weight_b, p, layer.scaling[name], cast)
        return result.to(result_dtype)

    return forward


def _lora_branch_class():
    import torch

    class LoraBranch(torch.autograd.Function):
        """lora_B(lora_A(dropout(x.to(A.dtype)))) * scaling, with CPU dropout drawn as torch draws it."""

        @staticmethod
        def forward(ctx, x, weight_a, weight_b, p, scaling, cast):
            ctx.p, ctx.scaling, ctx.cast = p, scaling, cast
            ctx.rng_state = torch.get_rng_state() if p > 0 else None
            dropped = _dropped(x, weight_a.dtype, p, cast)
            hidden = torch.nn.functional.linear(dropped, weight_a)
            ctx.save_for_backward(x, weight_a, weight_b, hidden)
            return torch.nn.functional.linear(hidden, weight_b) * scaling

        @staticmethod
        def backward(ctx, grad):
            x, weight_a, weight_b, hidden = ctx.saved_tensors
            grad = (grad * ctx.scaling).reshape(-1, grad.shape[-1])
            grad_b = grad.t().mm(hidden.reshape(-1, hidden.shape[-1])) if ctx.needs_input_grad[2] else None
            grad_hidden = grad.mm(weight_b)
            del grad
            noise = None
            if ctx.p > 0:
                current = torch.get_rng_state()
                torch.set_rng_state(ctx.rng_state)
                try:
                    dropped, noise = _dropped(x, weight_a.dtype, ctx.p, ctx.cast, with_noise=True)
                finally:
                    torch.set_rng_state(current)
            else:
                dropped = _dropped(x, weight_a.dtype, 0.0, ctx.cast)
            grad_a = grad_hidden.t().mm(dropped.reshape(-1, dropped.shape[-1])) if ctx.needs_input_grad[1] else None
            del dropped
            grad_x = None
            if ctx.needs_input_grad[0]:
                grad_x = grad_hidden.mm(weight_a).reshape(x.shape)
                if noise is not None:
                    grad_x = grad_x * noise
                grad_x = grad_x.to(x.dtype)
            return grad_x, grad_a, grad_b, None, None, None

    return LoraBranch


def _dropped(x, dtype, p: float, cast: bool, with_noise: bool = False):
    """dropout(x cast to dtype) computed as torch does it on the CPU: noise = bernoulli(1 - p) / (1 - p); x * noise."""
    import torch

    if cast and x.dtype != dtype:
        x = x.to(dtype)
    if p <= 0:
        return (x, None) if with_noise else x
    noise = torch.empty_like(x).bernoulli_(1 - p).div_(1 - p)
    out = x * noise
    return (out, noise) if with_noise else out


class _LazyLoraBranch:
    """`_LoraBranch.apply` without importing torch when this module is imported."""

    _cls = None

    def apply(self, *args):
        if _LazyLoraBranch._cls is None:
            _LazyLoraBranch._cls = _lora_branch_class()
        return _LazyLoraBranch._cls.apply(*args)


_LoraBranch = _LazyLoraBranch()
