"""Evaluation measures the model that was trained: a LoRA adapter is not rounded away in bfloat16.

Merging W + BA and casting the sum to bfloat16 keeps 8 significant bits per weight, less than most of
a LoRA update; so in bf16 the adapter stays unmerged with float32 weights, which is also exactly the
forward pass training used (a bf16 base with peft's float32 adapter)."""

import pytest
import torch

from pada.slm.config import LoRAConfig
from pada.slm.generate import load_for_inference, prompt_ids
from pada.slm.train import finetune

QUESTIONS = [f"What is {i} plus {i}?" for i in range(8)]
CONVERSATIONS = [[{"role": "user", "content": q}, {"role": "assistant", "content": f"The answer is {2 * i}."}]
                 for i, q in enumerate(QUESTIONS)]


@pytest.fixture(scope="module")
def bf16_adapter(tiny_slm_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bf16-adapter")
    finetune(str(tiny_slm_dir), CONVERSATIONS, LoRAConfig(epochs=2, batch_size=4, learning_rate=1e-2,
                                                          dtype="bfloat16"), out)
    return out


def _logits(model, tokenizer) -> torch.Tensor:
    ids = torch.tensor([prompt_ids(tokenizer, conv[:1]) for conv in CONVERSATIONS[:1]])
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def test_bf16_evaluation_keeps_the_adapter_unmerged_in_float32(tiny_slm_dir, bf16_adapter):
    model, _ = load_for_inference(str(tiny_slm_dir), bf16_adapter, dtype="bfloat16")
    lora = [p for name, p in model.named_parameters() if "lora_" in name]
    assert lora and all(p.dtype == torch.float32 for p in lora)
    merged, tokenizer = load_for_inference(str(tiny_slm_dir), bf16_adapter, dtype="float32")
    assert not any("lora_" in name for name, _ in merged.named_parameters())  # fp32: merged, exact
    auto, _ = load_for_inference(str(tiny_slm_dir), bf16_adapter, device="cpu")  # the pipeline's call
    assert auto.dtype == torch.float32 and not any("lora_" in name for name, _ in auto.named_parameters())
    assert torch.equal(_logits(auto, tokenizer), _logits(merged, tokenizer))


def test_bf16_evaluation_is_the_forward_pass_training_used(tiny_slm_dir, bf16_adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, tokenizer = load_for_inference(str(tiny_slm_dir), bf16_adapter, dtype="bfloat16")
    as_trained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_slm_dir, dtype=torch.bfloat16,
                                                                                attn_implementation="sdpa"),
                                           bf16_adapter).eval()
    assert torch.equal(_logits(model, tokenizer), _logits(as_trained, tokenizer))


def test_bf16_and_fp32_evaluation_of_one_adapter_agree(tiny_slm_dir, bf16_adapter):
    def adapter_effect(dtype: str) -> torch.Tensor:
        tuned, tokenizer = load_for_inference(str(tiny_slm_dir), bf16_adapter, dtype=dtype)
        base, _ = load_for_inference(str(tiny_slm_dir), dtype=dtype)
        return _logits(tuned, tokenizer) - _logits(base, tokenizer)

    fp32, bf16 = adapter_effect("float32"), adapter_effect("bfloat16")
    assert fp32.norm() > 1.0  # the adapter changes the model
    assert (bf16 - fp32).norm() / fp32.norm() < 0.05
    assert torch.equal(bf16.argmax(-1), fp32.argmax(-1)) or (bf16.argmax(-1) == fp32.argmax(-1)).float().mean() > 0.9
