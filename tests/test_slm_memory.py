"""The memory-lean fine-tune (issue 11) trains exactly what the plain transformers + peft path trains.

`pada.slm.train` computes logits only at labelled positions and gives peft's LoRA Linear a forward that keeps
less for the backward pass (see the notes in train.py). Here, on the tiny random Llama, the loss, every LoRA
gradient, the random-generator stream and the adapter after a few optimiser steps must equal the plain path's.
"""

import pytest
import torch

from pada.slm import train
from pada.slm.config import LoRAConfig
from pada.slm.train import IGNORE_INDEX, finetune, labelled_token_loss

CONVERSATIONS = [[{"role": "user", "content": f"What is {i} plus {i}? Explain it in a few words."},
                  {"role": "assistant", "content": f"{i} plus {i} is {2 * i}." + " Indeed." * (i % 3)}]
                 for i in range(12)]


def _batch(tokenizer, rows):
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)(rows)


def _models(model_dir, dtype, dropout):
    config = LoRAConfig(r=8, alpha=16, dropout=dropout, dtype="float32")
    models = []
    for lean in (False, True):
        torch.manual_seed(0)
        model = train._lora_model(str(model_dir), config, dtype)
        if not lean:  # undo the patch: peft's own forward
            for module in model.modules():
                module.__dict__.pop("forward", None)
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():  # lora_B starts at zero, which would leave lora_A without a gradient
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
        model.train()
        models.append(model)
    return models


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_loss_and_gradients_equal_the_plain_path(tiny_slm_dir, dtype, dropout):
    tokenizer = train._training_tokenizer(str(tiny_slm_dir))
    rows = [train.tokenize_conversation(tokenizer, conv, 1024) for conv in CONVERSATIONS[:6]]
    batch = _batch(tokenizer, rows)
    labels = batch.pop("labels")
    n_items = (labels[:, 1:] != IGNORE_INDEX).sum()
    plain, lean = _models(tiny_slm_dir, dtype, dropout)
    assert sum("forward" in m.__dict__ for m in lean.modules()) == 14  # 7 projections x 2 layers
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), lean.state_dict().values()))

    results = []
    for model, loss_fn in ((plain, lambda m: m(**batch, labels=labels, num_items_in_batch=n_items).loss),
                           (lean, lambda m: labelled_token_loss(m, labels, n_items, **batch))):
        torch.manual_seed(1234)
        loss = loss_fn(model)
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
        results.append((loss.detach(), grads, torch.rand(4)))  # torch.rand: the stream after the step
    (loss_p, grads_p, rng_p), (loss_l, grads_l, rng_l) = results
    assert len(grads_p) == 28 and grads_p.keys() == grads_l.keys()
    assert torch.equal(rng_p, rng_l)  # same number of random draws: later dropout masks stay the same
    torch.testing.assert_close(loss_l, loss_p, rtol=1e-6, atol=1e-6)
    for name in grads_p:
        assert grads_p[name].abs().sum() > 0, name
        torch.testing.assert_close(grads_l[name], grads_p[name], rtol=1e-5, atol=1e-7, msg=name)
    # the mean reduction (no num_items_in_batch) too
    means = []
    for model, loss_fn in ((plain, lambda m: m(**batch, labels=labels).loss),
                           (lean, lambda m: labelled_token_loss(m, labels, None, **batch))):
        torch.manual_seed(99)
        with torch.no_grad():
            means.append(loss_fn(model))
    torch.testing.assert_close(means[1], means[0], rtol=1e-6, atol=1e-6)


def test_trained_adapter_equals_the_plain_trainer(tiny_slm_dir, tmp_path, monkeypatch):
    from safetensors.torch import load_file
    from transformers import Trainer

    config = LoRAConfig(epochs=2, batch_size=4, learning_rate=1e-2, dropout=0.1, logging_steps=1, dtype="float32")
    lean = finetune(str(tiny_slm_dir), CONVERSATIONS, config, tmp_path / "lean")
    monkeypatch.setattr(train, "_LeanLossTrainer", Trainer)
    monkeypatch.setattr(train, "_lean_lora", lambda model: 0)
    plain = finetune(str(tiny_slm_dir), CONVERSATIONS, config, tmp_path / "plain")

    assert [e["loss"] for e in lean.losses] == pytest.approx([e["loss"] for e in plain.losses], rel=1e-5)
    weights_l = load_file(tmp_path / "lean" / "adapter_model.safetensors")
    weights_p = load_file(tmp_path / "plain" / "adapter_model.safetensors")
    assert weights_l.keys() == weights_p.keys() and len(weights_l) == 28
    for name in weights_p:
        torch.testing.assert_close(weights_l[name], weights_p[name], rtol=1e-4, atol=1e-6, msg=name)
    assert lean.summary["tokens_seen"] == plain.summary["tokens_seen"]


def test_release_host_memory_hands_freed_heap_back_to_the_os():
    import ctypes.util
    import gc
    import os

    from pada.slm.device import release_host_memory

    if ctypes.util.find_library("c") is None or not os.path.exists(f"/proc/{os.getpid()}/status"):
        pytest.skip("needs glibc and /proc")

    def rss_mb() -> float:
        status = open(f"/proc/{os.getpid()}/status").read()
        return int(status.split("VmRSS:")[1].split()[0]) / 1024

    release_host_memory()
    before = rss_mb()
    blocks = [bytearray(2048) for _ in range(150_000)]  # ~300 MB of small heap blocks (below mmap's threshold)
    pin = bytearray(2048)  # above them on the heap: glibc's own trimming only ever gives back the heap's top
    grown = rss_mb() - before
    del blocks
    gc.collect()
    kept = rss_mb() - before  # freed, but still held by the process (measured: 297 of 306 MB)
    release_host_memory()
    assert grown > 200 and kept > grown / 2 and rss_mb() - before < grown / 4
    del pin
