"""Batched greedy generation with the (optionally LoRA-merged) small language model.

Why it is shaped this way (measured on a 2-core CPU, SmolLM2-135M, ARC prompts):
- one-at-a-time decoding is bound by reading all weights once per new token;
  a batch shares that read, so decoding cost per sample drops ~batch-size-fold;
- prefill (the prompt) is already compute-bound at batch size 1, so batching
  cannot make it cheaper: on ARC (~110 prompt tokens, <= 10 new) the batched
  run spends ~95% of its time in prefill. What we can do is not waste it:
  prompts are sorted by length (little padding), and the prefix every prompt
  shares (chat-template system turn, ~20% of ARC tokens) is computed once;
- rows that hit the end-of-turn token leave the batch at once, which matters
  for long answers (GSM8K, code) where one long row would keep 15 finished
  rows computing;
- a plain greedy loop on the model's forward (DynamicCache, logits of the last
  position only) instead of `model.generate`: same tokens (checked in tests),
  and it allows the two tricks above;
- on a CPU a batch also stops at a token budget (rows x width): memory grows
  with it, and long prompts in full batches were slower, not faster;
- outputs come back in the caller's order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from pada.errors import PadaError
from pada.records import Message

ProgressFn = Callable[[int, int], None]  # (conversations done, total)


def load_for_inference(base_model: str | Path | None = None, adapter_dir: str | Path | None = None,
                       device: str | None = None, dtype: str | None = None):
    """(model, tokenizer) ready for `generate`: eval mode, the LoRA adapter applied, left padding.

    Evaluation must measure the model that was trained. In float32 the adapter is merged into the
    weights (exact, and no extra work per token); `dtype` auto with an adapter on a CPU means float32. In a lower precision it stays unmerged, its own
    weights in float32: merging and then casting W + BA to bfloat16 rounds every element to 8
    significant bits, and a LoRA update is mostly smaller than that step, so most of it would vanish
    (the base weights are bf16 either way; unmerged, the update's output is added in float32).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pada.bundled import resolve_model
    from pada.slm.device import resolve_device, resolve_dtype

    model_path = resolve_model(base_model)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    if adapter_dir is not None and dtype in (None, "", "auto") and device == "cpu":
        # Both ways are exact; on a CPU the merged float32 model is the faster one (96 SQuAD questions, 2 cores:
        # 36 s merged in float32 against 49 s bf16 with the adapter unmerged, whose per-module casts and small
        # matmuls cost more than bf16 saves). On a GPU the unmerged adapter costs little and bf16 stays.
        torch_dtype = torch.float32
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token

    # Loaded in its dtype (as training loads it), not cast afterwards: a cast would also round buffers
    # such as the rotary frequencies that transformers keeps in float32.
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype, attn_implementation="sdpa")
    model.to(device)
    if adapter_dir is not None:
        model = _apply_adapter(model, Path(adapter_dir), merge=torch_dtype == torch.float32)
    return model.eval(), tokenizer


def _apply_adapter(model, adapter_dir: Path, merge: bool):
    """The model with the LoRA adapter: merged into float32 weights, or kept beside low-precision ones."""
    from peft import PeftModel

    if not (adapter_dir / "adapter_config.json").is_file():
        raise PadaError(f"{adapter_dir} is not a LoRA adapter directory (no adapter_config.json); "
                        "pass the --out directory of `pada finetune`")
    # autocast_adapter_dtype: the adapter's weights stay float32 on a bf16/fp16 base model
    peft_model = PeftModel.from_pretrained(model, str(adapter_dir), autocast_adapter_dtype=True)
    return peft_model.merge_and_unload() if merge else peft_model


def generate(model, tokenizer, conversations: Sequence[Sequence[Message]], max_new_tokens: int,
             batch_size: int = 16, on_progress: ProgressFn | None = None,
             max_batch_tokens: int | None = None) -> list[str]:
    """Greedy replies to `conversations` (each ends with a user turn), in the same order.

    Stops each row at the end-of-turn token; returns only the new text, special
    tokens stripped. batch_size=1 gives plain one-at-a-time decoding (same code path).
    """
    import torch

    prompts = [prompt_ids(tokenizer, conv) for conv in conversations]
    if not prompts:
        return []
    batch_size = max(1, batch_size)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)  # longest first: OOM shows early
    replies: list[str] = [""] * len(prompts)
    stop_ids = stop_token_ids(tokenizer, model.generation_config)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else sorted(stop_ids)[0]
    done = 0
    with torch.inference_mode():
        prefix = _SharedPrefix.build(model, prompts)
        for batch in _batches(order, prompts, prefix.length, batch_size, max_batch_tokens, max_new_tokens):
            new_tokens = _greedy_batch(model, [prompts[i] for i in batch], prefix, max_new_tokens, stop_ids, pad_id)
            for index, tokens in zip(batch, new_tokens):
                replies[index] = tokenizer.decode(tokens, skip_special_tokens=True)
            done += len(batch)
            if on_progress:
                on_progress(done, len(prompts))
    return replies


def _batches(order: list[int], prompts: list[list[int]], prefix_length: int, batch_size: int,
             max_batch_tokens: int | None, max_new_tokens: int):
    """Consecutive runs of `order` (longest prompt first): at most `batch_size` rows, and with `max_batch_tokens`
    at most that many cache positions (rows x (longest un-shared prompt part + max_new_tokens)) per batch.

    The budget bounds memory, which grows with rows x width (the KV cache, and attention scores during prefill):
    a batch of short prompts keeps `batch_size` rows, a batch of long ones gets fewer."""
    batch: list[int] = []
    for index in order:
        width = len(prompts[batch[0] if batch else index]) - prefix_length + max_new_tokens
        full = len(batch) >= batch_size or (
            max_batch_tokens is not None and batch and (len(batch) + 1) * width > max_batch_tokens)
        if full:
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


def prompt_ids(tokenizer, conversation: Sequence[Message]) -> list[int]:
    """The conversation through the chat template (as training renders it), ending with the generation prompt."""
    from pada.slm.train import render

    return render(tokenizer, conversation, add_generation_prompt=True)


def stop_token_ids(tokenizer, generation_config) -> set[int]:
    """End-of-turn tokens: the tokenizer's eos and the model's generation-config eos (one id or a list)."""
    eos = generation_config.eos_token_id if generation_config is not None else None
    return {tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}


class _SharedPrefix:
    """KV cache of the token prefix every prompt shares (chat-template system turn + user header), computed once.

    With SmolLM2's template that is ~24 of ~110 ARC prompt tokens: ~20% of all prefill work saved, for
    one-at-a-time and batched decoding alike.
    """

    def __init__(self, length: int, cache):
        self.length, self.cache = length, cache

    @classmethod
    def build(cls, model, prompts: list[list[int]]) -> _SharedPrefix:
        import torch
        from transformers import DynamicCache

        length = _common_prefix_length(prompts)
        length = min(length, min(len(p) for p in prompts) - 1)  # every row keeps >= 1 token to prefill
        if length < 1:
            return cls(0, None)
        cache = DynamicCache(config=model.config)
        ids = torch.tensor([prompts[0][:length]], device=model.device)
        model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return cls(length, cache)

    def cache_for(self, model, rows: int):
        """A fresh cache holding the prefix for `rows` rows (generation appends to it in place)."""
        import copy

        from transformers import DynamicCache

        if self.cache is None:
            return DynamicCache(config=model.config)
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(rows)
        return cache


def _common_prefix_length(prompts: list[list[int]]) -> int:
    first = prompts[0]
    length = len(first)
    for other in prompts[1:]:
        limit = min(length, len(other))
        n = 0
        while n < limit and other[n] == first[n]:
            n += 1
        length = n
    return length


def _greedy_batch(model, batch: list[list[int]], prefix: _SharedPrefix, max_new_tokens: int,
                  stop_ids: set[int], pad_id: int) -> list[list[int]]:
    """New token ids for each prompt in `batch`, greedy, each cut at (and without) its first stop token.

    Layout per row: [shared prefix (cached)] [left padding] [rest of the prompt]; the attention mask hides the
    padding and position ids count only real tokens, so every row computes exactly what it would alone.
    Rows that finish are dropped from the batch (and the cache), so a long answer in one row does not keep
    the others' compute alive.
    """
    import torch

    device = model.device
    suffixes = [prompt[prefix.length:] for prompt in batch]
    width = max(len(s) for s in suffixes)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long, device=device)
    attention_mask = torch.zeros((len(batch), prefix.length + width), dtype=torch.long, device=device)
    attention_mask[:, :prefix.length] = 1
    for row, suffix in enumerate(suffixes):
        input_ids[row, width - len(suffix):] = torch.tensor(suffix, device=device)
        attention_mask[row, prefix.length + width - len(suffix):] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, prefix.length:]
    cache = prefix.cache_for(model, len(batch))

    outputs: list[list[int]] = [[] for _ in batch]
    alive = list(range(len(batch)))  # original row of each row still in the tensors
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   past_key_values=cache, use_cache=True, logits_to_keep=1).logits
    for step in range(max_new_tokens):
        next_tokens = logits[:, -1, :].argmax(dim=-1)
        keep = []
        for i, token in enumerate(next_tokens.tolist()):
            if token not in stop_ids:
                outputs[alive[i]].append(token)
                keep.append(i)
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(alive):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            attention_mask, next_tokens = attention_mask[index], next_tokens[index]
            alive = [alive[i] for i in keep]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(alive), 1))], dim=1)
        position_ids = attention_mask.sum(dim=1, keepdim=True) - 1
        logits = model(input_ids=next_tokens[:, None], attention_mask=attention_mask, position_ids=position_ids,
                       past_key_values=cache, use_cache=True).logits
    return outputs
