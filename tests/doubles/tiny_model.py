"""A tiny randomly initialised Llama with the real SmolLM2 tokenizer, for fast tests.

It has the real vocabulary and chat template (so tokenisation, masking and the
chat format are exercised exactly as with SmolLM2) but only ~3.3 M parameters,
almost all in the embedding table, so it trains and generates in seconds.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_model(out_dir: str | Path, seed: int = 0) -> Path:
    """Save a seeded tiny LlamaForCausalLM + the SmolLM2 tokenizer into `out_dir`; return it.

    The tokenizer comes from `pada.bundled.smollm2_tokenizer_dir()` (~6 s the first
    time, then cached), never from converting the full model.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from pada.bundled import smollm2_tokenizer_dir

    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, like SmolLM2
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        # 5x the usual 0.02: with hidden size 64 and frozen (LoRA) embeddings, logits from a 0.02 init stay
        # near-uniform and the loss can barely move; 0.1 lets a few LoRA steps visibly lower it.
        initializer_range=0.1,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
