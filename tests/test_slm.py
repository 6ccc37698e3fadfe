"""pada.slm on the tiny random Llama (fixture `tiny_slm_dir`): masking, LoRA training, generation, evaluation."""

import json

import pytest

from pada.errors import PadaError
from pada.records import Example, Score
from pada.slm.config import LoRAConfig
from pada.slm.evaluate import evaluate, write_predictions
from pada.slm.generate import _batches, _greedy_batch, _SharedPrefix, generate, load_for_inference, prompt_ids
from pada.slm.train import IGNORE_INDEX, SUMMARY_FILE, finetune, tokenize_conversation
from pada.tasks.base import Pools, Task


def qa(question: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


CONVERSATIONS = [qa(f"What is {i} plus {i}?", f"The answer is {2 * i}.") for i in range(8)]
PROMPTS = [[{"role": "user", "content": text}] for text in
           ["Hi", "What is the capital of France?", "Name three colours, please, and explain each one briefly.",
            "2+2?", "Tell me a very short story about a cat who learns to fly over the sea.", "Why?"]]


@pytest.fixture(scope="module")
def tokenizer(tiny_slm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_slm_dir)


@pytest.fixture(scope="module")
def trained(tiny_slm_dir, tmp_path_factory):
    """One short LoRA run shared by the training tests (lr is high so a random model visibly learns)."""
    progress = []
    out_dir = tmp_path_factory.mktemp("adapter")
    config = LoRAConfig(epochs=4, batch_size=4, learning_rate=1e-2, logging_steps=1, dtype="float32")
    result = finetune(str(tiny_slm_dir), CONVERSATIONS, config, out_dir,
                      on_progress=lambda step, total: progress.append((step, total)))
    return result, progress


# ---------------------------------------------------------------- masking

def test_only_assistant_tokens_carry_labels(tokenizer):
    row = tokenize_conversation(tokenizer, qa("What is 2 plus 2?", "The answer is 4."), max_seq_len=1024)
    labelled = [t for t, label in zip(row["input_ids"], row["labels"]) if label != IGNORE_INDEX]
    first = row["labels"].index(next(label for label in row["labels"] if label != IGNORE_INDEX))
    assert all(label == IGNORE_INDEX for label in row["labels"][:first])  # the whole prompt is masked
    assert tokenizer.decode(labelled).startswith("The answer is 4.<|im_end|>")
    assert "What is 2 plus 2" not in tokenizer.decode(labelled)
    assert tokenizer.decode(row["input_ids"][:first]).endswith("<|im_start|>assistant\n")


def test_every_assistant_turn_is_labelled_in_multi_turn(tokenizer):
    conversation = qa("Hi", "Hello!") + qa("Bye", "Goodbye!")
    row = tokenize_conversation(tokenizer, conversation, max_seq_len=1024)
    labelled = tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"]) if label != IGNORE_INDEX])
    assert "Hello!" in labelled and "Goodbye!" in labelled
    assert "Hi" not in labelled and "Bye<" not in labelled


def test_truncation_that_removes_the_answer_drops_the_example(tokenizer):
    assert tokenize_conversation(tokenizer, qa("x " * 200, "y"), max_seq_len=16) is None


def test_config_validation_names_the_problem():
    assert LoRAConfig(target_modules="q_proj, v_proj").target_modules == ["q_proj", "v_proj"]
    with pytest.raises(PadaError, match="dtype"):
        LoRAConfig(dtype="int8")
    assert LoRAConfig.from_dict({**LoRAConfig(r=8).to_dict(), "unknown": 1}).r == 8


# ---------------------------------------------------------------- training

def test_finetune_lowers_loss_and_writes_summary(trained):
    result, progress = trained
    assert result.n_examples == len(CONVERSATIONS)
    assert len(result.losses) == 8  # 8 examples / batch 4 * 4 epochs, logged every step
    first, last = result.losses[0]["loss"], result.losses[-1]["loss"]
    assert last < first - 1.0, (first, last)
    summary = json.loads((result.adapter_dir / SUMMARY_FILE).read_text())
    assert summary["n_examples"] == 8 and summary["steps"] == 8 and summary["tokens_per_second"] > 0
    assert summary["config"]["learning_rate"] == 1e-2
    assert progress[-1] == (8, 8)


def test_saved_adapter_reloads_to_the_same_greedy_outputs(trained, tiny_slm_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result, _ = trained
    merged, tokenizer = load_for_inference(str(tiny_slm_dir), result.adapter_dir, dtype="float32")
    base = AutoModelForCausalLM.from_pretrained(tiny_slm_dir, dtype=torch.float32)
    plain, _ = load_for_inference(str(tiny_slm_dir), dtype="float32")
    peft_model = PeftModel.from_pretrained(base, result.adapter_dir).eval()
    prompts = [conv[:1] for conv in CONVERSATIONS[:4]]

    from_peft = generate(peft_model, tokenizer, prompts, max_new_tokens=8, batch_size=4)
    assert from_peft == generate(merged, tokenizer, prompts, max_new_tokens=8, batch_size=4)
    assert from_peft != generate(plain, tokenizer, prompts, max_new_tokens=8, batch_size=4)  # the adapter matters


def test_empty_training_set_is_a_user_error(tiny_slm_dir, tmp_path):
    with pytest.raises(PadaError, match="empty"):
        finetune(str(tiny_slm_dir), [], LoRAConfig(), tmp_path)


# ---------------------------------------------------------------- generation

@pytest.fixture(scope="module")
def tiny_fp32(tiny_slm_dir):
    return load_for_inference(str(tiny_slm_dir), dtype="float32")


def test_batched_generation_equals_one_at_a_time(tiny_fp32):
    model, tokenizer = tiny_fp32
    one_by_one = generate(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=1)
    batched = generate(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=4)
    assert batched == one_by_one
    assert all(isinstance(text, str) and text for text in batched)
    assert generate(model, tokenizer, PROMPTS[:1], max_new_tokens=8, batch_size=4) == one_by_one[:1]  # order kept


def test_a_token_budget_splits_batches_by_length_and_changes_no_reply(tiny_fp32):
    model, tokenizer = tiny_fp32
    one_by_one = generate(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=1)
    budget = 2 * (max(len(prompt_ids(tokenizer, conv)) for conv in PROMPTS) + 8)  # two or three rows a batch
    assert generate(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=6, max_batch_tokens=budget) == one_by_one


def test_batches_keep_rows_times_width_within_the_budget():
    prompts = [[0] * n for n in (30, 12, 10, 10, 9, 4, 50)]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    batches = list(_batches(order, prompts, prefix_length=2, batch_size=3, max_batch_tokens=40, max_new_tokens=4))
    assert [i for batch in batches for i in batch] == order  # every prompt once, longest first
    # a prompt wider than the budget still gets a batch of its own; otherwise rows x (width + new) <= 40
    assert batches[:2] == [[6], [0]]
    for batch in batches[2:]:
        assert len(batch) <= 3 and len(batch) * (len(prompts[batch[0]]) - 2 + 4) <= 40
    assert list(_batches(order, prompts, 2, 3, None, 4)) == [order[:3], order[3:6], order[6:]]  # rows only


def test_greedy_loop_matches_transformers_generate(tiny_fp32):
    """Our loop (shared-prefix cache, dropping finished rows) must equal HF's own greedy decoding."""
    import torch

    model, tokenizer = tiny_fp32
    ours = generate(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=3)
    for conversation, reply in zip(PROMPTS, ours):
        ids = torch.tensor([prompt_ids(tokenizer, conversation)])
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        assert tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True) == reply


def test_a_row_that_stops_early_leaves_the_batch_and_the_others_go_on(tiny_fp32):
    """Declare row 1's third token a stop token: row 1 ends after 2 tokens, the rest match one-at-a-time runs."""
    model, tokenizer = tiny_fp32
    free = [_greedy_batch(model, [prompt_ids(tokenizer, conv)], _SharedPrefix(0, None), 8, set(), 0)[0]
            for conv in PROMPTS]
    stop = free[1][2]
    assert stop not in free[1][:2]
    original = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [original, stop]
    try:
        batched = generate(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=6)
        single = generate(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=1)
    finally:
        model.generation_config.eos_token_id = original
    assert batched == single
    assert batched[1] == tokenizer.decode(free[1][:2], skip_special_tokens=True)
    assert any(tokens == free_tokens and len(tokens) == 8 for tokens, free_tokens in
               ((f[: f.index(stop)] if stop in f else f, f) for f in free))  # some row ran the full budget
    assert generate(model, tokenizer, PROMPTS[:3], max_new_tokens=0, batch_size=3) == ["", "", ""]


def test_missing_adapter_dir_is_a_user_error(tiny_slm_dir, tmp_path):
    with pytest.raises(PadaError, match="adapter"):
        load_for_inference(str(tiny_slm_dir), tmp_path / "nope")


# ---------------------------------------------------------------- evaluation

class EchoTask(Task):
    """Tiny task: correct when the reply contains the answer, or always when gold says so."""

    name = "echo"
    metric = "accuracy"
    max_new_tokens = 6

    def pools(self) -> Pools:
        raise NotImplementedError

    def score(self, example: Example, prediction: str) -> Score:
        correct = example.gold.get("accept_any", False) or example.answer in prediction
        return Score(correct=correct, extracted=prediction[:5], metrics={"f1": 1.0 if correct else 0.25})


def test_evaluate_returns_predictions_and_failures_with_ids(tiny_slm_dir, tmp_path):
    from pada.slm.backends import HFBackend

    backend = HFBackend(str(tiny_slm_dir), dtype="float32", batch_size=2)
    examples = [Example(id=f"ex{i}", task="echo", source_split="validation", prompt=f"Say {i}",
                        answer=f"zz{i}zz", gold={"accept_any": i % 2 == 0}) for i in range(5)]
    result = evaluate(EchoTask(), examples, backend, "validation")

    assert [p.id for p in result.predictions] == [e.id for e in examples]
    assert [f.id for f in result.failures] == ["ex1", "ex3"]
    assert result.metric == pytest.approx(3 / 5)
    assert result.metrics["f1"] == pytest.approx((3 * 1.0 + 2 * 0.25) / 5)
    failure = result.failures[0]
    assert failure.input == "Say 1" and failure.ground_truth == "zz1zz" and failure.split == "validation"
    assert failure.prediction == result.predictions[1].prediction

    lines = write_predictions(tmp_path / "preds.jsonl", result.predictions).read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [e.id for e in examples]
    assert {"id", "prediction", "extracted", "correct"} <= set(json.loads(lines[0]))
