"""SLM evaluation backends (hf in process, vllm against a STAND-IN of vLLM's server: tests/doubles/vllm_standin.py),
the pinned chat-template date, one-device training, activation checkpointing and the 'auto' eval batch size."""

import json
import types

import pytest

from pada.config import ConfigError, SLMConfig
from pada.errors import PadaError
from pada.slm.backends import HFBackend, VLLMBackend, eval_batch_size, open_backend
from pada.slm.config import LoRAConfig
from pada.slm.train import CHAT_TEMPLATE_DATE, finetune, render

CONVERSATIONS = [[{"role": "user", "content": f"What is {i} plus {i}?"},
                  {"role": "assistant", "content": f"The answer is {2 * i}."}] for i in range(8)]
PROMPTS = [[{"role": "user", "content": text}] for text in
           ["What is 3 plus 3?", "Hi", "Name three colours, please.", "What is 5 plus 5?", "Why?", "2+2?"]]


@pytest.fixture(scope="module")
def adapter(tiny_slm_dir, tmp_path_factory):
    """A rank-32 adapter (the paper's r), trained enough that its replies differ from the base model's."""
    out = tmp_path_factory.mktemp("adapter")
    finetune(str(tiny_slm_dir), CONVERSATIONS, LoRAConfig(epochs=3, batch_size=4, learning_rate=1e-2,
                                                          dtype="float32"), out)
    return out


@pytest.fixture()
def standin(tiny_slm_dir):
    from doubles.vllm_standin import VLLMStandIn

    with VLLMStandIn(tiny_slm_dir, max_lora_rank=32) as server:
        yield server


def test_vllm_replies_equal_the_hf_backend_and_the_adapter_is_unloaded(tiny_slm_dir, adapter, standin):
    with HFBackend(str(tiny_slm_dir), adapter, device="cpu", batch_size=4) as hf:
        expected = hf.replies(PROMPTS, max_new_tokens=12)
        tokenizer = hf.tokenizer
    with HFBackend(str(tiny_slm_dir), device="cpu") as base:
        base_replies = base.replies(PROMPTS, max_new_tokens=12)
    assert expected != base_replies  # the adapter changes the replies, so equality below shows it was applied

    progress = []
    with VLLMBackend(standin.api_base, str(tiny_slm_dir), adapter, adapter_name="it1", concurrency=4) as vllm:
        assert standin.adapters == {"it1": str(adapter.resolve())}
        replies = vllm.replies(PROMPTS, max_new_tokens=12, on_progress=lambda done, total: progress.append(done))
    assert replies == expected
    assert standin.adapters == {}  # unloaded on close
    assert sorted(progress) == list(range(1, len(PROMPTS) + 1))

    paths = [path for path, _ in standin.requests]
    assert paths[0] == "/v1/load_lora_adapter" and paths[-1] == "/v1/unload_lora_adapter"
    completions = [body for path, body in standin.requests if path == "/v1/completions"]
    assert sorted(map(json.dumps, (c["prompt"] for c in completions))) == sorted(
        json.dumps(render(tokenizer, p, add_generation_prompt=True)) for p in PROMPTS)  # training's template
    assert all(c["model"] == "it1" and c["temperature"] == 0 and c["max_tokens"] == 12 for c in completions)
    assert all(tokenizer.convert_tokens_to_ids("<|im_end|>") in c["stop_token_ids"] for c in completions)
    assert standin.max_in_flight > 1  # requests overlap


def test_rank_above_the_server_limit_is_refused_naming_the_flag(tiny_slm_dir, adapter):
    from doubles.vllm_standin import VLLMStandIn

    with VLLMStandIn(tiny_slm_dir) as server:  # vLLM's default --max-lora-rank: 16
        with pytest.raises(PadaError) as err:
            VLLMBackend(server.api_base, str(tiny_slm_dir), adapter)
    message = str(err.value)
    assert "\n" not in message and "LoRA rank 32" in message and "--max-lora-rank 32" in message


def test_unreachable_server_is_one_line_naming_the_address(tiny_slm_dir, adapter):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(PadaError) as err:
        VLLMBackend(f"http://127.0.0.1:{port}", str(tiny_slm_dir), adapter)
    message = str(err.value)
    assert "\n" not in message and f"http://127.0.0.1:{port}/v1 is unreachable" in message


def test_server_without_runtime_lora_loading_says_how_to_start_it(tiny_slm_dir, adapter):
    from doubles.vllm_standin import VLLMStandIn

    with VLLMStandIn(tiny_slm_dir, max_lora_rank=32, runtime_lora_updating=False) as server:
        with pytest.raises(PadaError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"):
            VLLMBackend(server.api_base, str(tiny_slm_dir), adapter)


def test_a_refused_completion_raises_and_still_unloads_the_adapter(tiny_slm_dir, adapter):
    from doubles.vllm_standin import VLLMStandIn

    with VLLMStandIn(tiny_slm_dir, max_lora_rank=32, max_model_len=40) as server:
        with pytest.raises(PadaError, match="maximum context length is 40"):
            with VLLMBackend(server.api_base, str(tiny_slm_dir), adapter, adapter_name="x") as vllm:
                vllm.replies(PROMPTS, max_new_tokens=30)
        assert server.adapters == {}
        assert server.requests[-1] == ("/v1/unload_lora_adapter", {"lora_name": "x"})


def test_an_adapter_left_loaded_is_reloaded_and_no_adapter_uses_the_served_model(tiny_slm_dir, adapter, standin):
    standin.adapters["left"] = "/somewhere/old"  # an earlier evaluation was interrupted
    with VLLMBackend(standin.api_base, str(tiny_slm_dir), adapter, adapter_name="left"):
        assert standin.adapters == {"left": str(adapter.resolve())}
    with HFBackend(str(tiny_slm_dir), device="cpu", dtype="float32") as hf:  # the stand-in's precision
        expected = hf.replies(PROMPTS[:2], max_new_tokens=6)
    with VLLMBackend(standin.api_base.removesuffix("/v1"), str(tiny_slm_dir)) as base:  # "/v1" is added
        assert base.model_name == "base"
        assert base.replies(PROMPTS[:2], max_new_tokens=6) == expected


def test_open_backend_follows_the_slm_config(tiny_slm_dir, adapter, standin):
    with open_backend(SLMConfig(model=str(tiny_slm_dir), backend="vllm", api_base=standin.api_base,
                                eval_batch_size=3), adapter) as backend:
        assert isinstance(backend, VLLMBackend) and backend.concurrency == 3
    with open_backend(SLMConfig(model=str(tiny_slm_dir)), adapter) as backend:
        assert isinstance(backend, HFBackend) and backend.batch_size == 16  # 'auto' on a CPU


@pytest.mark.parametrize("values, field", [
    ({"backend": "vllm"}, "api_base"), ({"backend": "tgi"}, "backend"),
    ({"eval_batch_size": "big"}, "eval_batch_size"), ({"eval_batch_size": 0}, "eval_batch_size")])
def test_slm_config_refuses_bad_backend_settings(values, field):
    with pytest.raises(ConfigError) as err:
        SLMConfig(**values)
    assert err.value.field == field


def test_auto_eval_batch_size_by_device_and_model_size():
    def fake_model(device: str, params: int):
        tensor = types.SimpleNamespace(numel=lambda: params)
        return types.SimpleNamespace(device=types.SimpleNamespace(type=device), parameters=lambda: [tensor])

    assert eval_batch_size("auto", fake_model("cpu", 10**9)) == 16
    assert eval_batch_size("auto", fake_model("cuda", 135 * 10**6)) == 256
    assert eval_batch_size("auto", fake_model("cuda", 1_240 * 10**6)) == 128  # Llama 3.2 1B
    assert eval_batch_size(24, fake_model("cuda", 10**9)) == 24


# ---------------------------------------------------------------- chat template date

LLAMA3_DATE_TEMPLATE = (  # the date logic of Llama 3.1/3.2's chat template, on SmolLM2's turn markers
    "{%- if not date_string is defined %}{%- if strftime_now is defined %}"
    "{%- set date_string = strftime_now('%d %b %Y') %}{%- else %}{%- set date_string = '26 Jul 2024' %}"
    "{%- endif %}{%- endif %}"
    "<|im_start|>system\nToday Date: {{ date_string }}<|im_end|>\n"
    "{%- for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}")


def test_prompts_do_not_change_with_the_clock(tiny_slm_dir, monkeypatch):
    import datetime as real

    from transformers import AutoTokenizer
    from transformers.utils import chat_template_utils

    tokenizer = AutoTokenizer.from_pretrained(tiny_slm_dir)
    tokenizer.chat_template = LLAMA3_DATE_TEMPLATE

    def on(day: int):
        class Clock(real.datetime):
            @classmethod
            def now(cls, tz=None):
                return real.datetime(2026, 3, day, tzinfo=tz)

        monkeypatch.setattr(chat_template_utils, "datetime", Clock)
        unpinned = tokenizer.apply_chat_template(PROMPTS[0], tokenize=False, add_generation_prompt=True)
        return unpinned, tokenizer.decode(render(tokenizer, PROMPTS[0], add_generation_prompt=True))

    (unpinned_1, pinned_1), (unpinned_2, pinned_2) = on(1), on(2)
    assert "Today Date: 01 Mar 2026" in unpinned_1 and "Today Date: 02 Mar 2026" in unpinned_2  # the clock shows
    assert pinned_1 == pinned_2 and f"Today Date: {CHAT_TEMPLATE_DATE}" in pinned_1


# ---------------------------------------------------------------- training on one device

def test_training_uses_one_device_when_several_gpus_are_visible(monkeypatch, tmp_path):
    import torch
    from transformers import TrainingArguments

    from pada.slm.train import _training_arguments

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    plain = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, report_to="none")
    assert plain.n_gpu == 4 and plain.train_batch_size == 32  # transformers' own choice: DataParallel over 4
    args = _training_arguments(LoRAConfig(batch_size=8), "cuda", str(tmp_path))
    assert args.n_gpu == 1 and args.train_batch_size == 8


def test_activation_checkpointing_gives_the_same_losses(tiny_slm_dir, tmp_path, monkeypatch):
    from transformers import modeling_utils

    recomputed = []
    real_checkpoint = modeling_utils.checkpoint

    def counting_checkpoint(function, *args, **kwargs):
        recomputed.append(kwargs.get("use_reentrant"))
        return real_checkpoint(function, *args, **kwargs)

    monkeypatch.setattr(modeling_utils, "checkpoint", counting_checkpoint)

    def losses(checkpointing: bool):
        config = LoRAConfig(epochs=2, batch_size=4, learning_rate=1e-2, logging_steps=1, dtype="float32",
                            dropout=0.1, activation_checkpointing=checkpointing)
        result = finetune(str(tiny_slm_dir), CONVERSATIONS, config, tmp_path / str(checkpointing))
        return [entry["loss"] for entry in result.losses], result.summary

    plain, _ = losses(False)
    assert recomputed == []
    checkpointed, summary = losses(True)
    assert recomputed and set(recomputed) == {False}  # every decoder layer went through non-reentrant checkpoint
    assert summary["config"]["activation_checkpointing"] is True
    assert len(plain) == len(checkpointed) == 4
    assert checkpointed == pytest.approx(plain, rel=1e-4)


# ---------------------------------------------------------------- wiring

def test_a_vanilla_run_evaluated_through_vllm_stores_what_the_hf_backend_would(tiny_slm_dir, tmp_path, standin):
    from conftest import tiny_run_config
    from pada.config import from_dict
    from pada.pipeline import Pipeline, start_run

    slm = {"backend": "vllm", "api_base": standin.api_base, "eval_batch_size": 4}
    config = from_dict(tiny_run_config(tiny_slm_dir, method="vanilla", iterations=1, slm=slm))
    store = start_run(config, runs_root=tmp_path, run_id="via-vllm")
    pipeline = Pipeline(store, config)
    assert pipeline.run() == "completed"
    assert standin.adapters == {}  # unloaded after the evaluation
    loads = [body for path, body in standin.requests if path == "/v1/load_lora_adapter"]
    assert [body["lora_path"] for body in loads] == [str(store.adapter_dir(1).resolve())]

    with HFBackend(str(tiny_slm_dir), store.adapter_dir(1), device="cpu") as hf:
        for split in ("validation", "test"):
            examples = {e.id: e for e in getattr(pipeline.splits, split)}
            stored = store.predictions(1, split)
            assert stored and sorted(p.id for p in stored) == sorted(examples)
            expected = hf.replies([examples[p.id].messages(with_answer=False) for p in stored],
                                  pipeline.task.max_new_tokens)
            assert [p.prediction for p in stored] == expected
    store.close()


def test_pada_eval_through_vllm(tiny_slm_dir, adapter, standin, capsys):
    from pada.cli import main

    argv = ["eval", "--task", "arc_challenge", "--limit", "3", "--model", str(tiny_slm_dir), "--adapter", str(adapter),
            "--backend", "vllm"]
    assert main(argv) == 2
    assert "--api-base" in capsys.readouterr().err.strip().splitlines()[-1]
    assert main([*argv, "--api-base", standin.api_base]) == 0
    assert "validation: accuracy" in capsys.readouterr().out
    assert sum(path == "/v1/completions" for path, _ in standin.requests) == 3 and standin.adapters == {}


def test_a_path_the_server_cannot_read_as_an_adapter_is_reported(tiny_slm_dir, adapter, standin, monkeypatch):
    serve = standin.load_lora_adapter  # a server on another filesystem: no adapter at that path there
    monkeypatch.setattr(standin, "load_lora_adapter",
                        lambda body: serve({**body, "lora_path": body["lora_path"] + "-elsewhere"}))
    with pytest.raises(PadaError, match=r"could not load adapter .*\(404\): .*No adapter found.*same path"):
        VLLMBackend(standin.api_base, str(tiny_slm_dir), adapter)


@pytest.mark.parametrize("text, expected", [("true", True), ("yes", True), ("false", False), ("0", False)])
def test_finetune_flag_for_activation_checkpointing(text, expected):
    import argparse

    from pada.commands.finetune import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--task", "squad", "--train-size", "4", "--out", "x", "--activation-checkpointing", text])
    assert config_from_args(args).activation_checkpointing is expected


def test_preflight_finds_an_unreachable_vllm_server_before_the_run_starts(tiny_slm_dir, standin):
    import socket

    from conftest import tiny_run_config
    from pada.config import from_dict, preflight

    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    config = from_dict(tiny_run_config(tiny_slm_dir, method="vanilla", iterations=1,
                                       slm={"backend": "vllm", "api_base": closed}))
    with pytest.raises(ConfigError) as caught:
        preflight(config)
    message = str(caught.value)
    assert "slm.api_base" in message and closed in message and "\n" not in message and "--enable-lora" in message
    preflight(from_dict(tiny_run_config(tiny_slm_dir, method="vanilla", iterations=1,
                                        slm={"backend": "vllm", "api_base": standin.api_base})))  # answers: passes
