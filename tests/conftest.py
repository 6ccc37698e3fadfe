"""Shared test settings: nothing in the suite may touch the network.

The test doubles (scripted LLM stand-in, tiny model) live in tests/doubles/ and are installed from
here; the product neither ships nor names them. A test plugs the stand-in in the way any in-process
model is plugged in, `pada.llm.client.register_provider` (see doubles/scripted_llm.py).
"""

import json
import os

# Set before anything imports litellm / transformers.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# On a shared, busy CPU, OpenMP threads that spin-wait slow torch down up to 10x (measured: a tiny LoRA step
# 0.4 s -> 1.5-5.8 s at load 10); passive waiting removes that. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


import uuid  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def scripted_provider():
    """The `scripted/` provider for the whole session: a stand-in answering every PaDA stage.

    Tests that script their own replies register a fresh stand-in over it (`scripted_llm.register()`).
    """
    from doubles.pada_script import install

    return install()


@pytest.fixture
def stand_in():
    """The scripted LLM stand-in (doubles/scripted_llm.py; canned replies, not a model) answering generation
    and quality-control requests; `.received` holds every request it was sent."""
    from doubles import scripted_llm
    from doubles.scripted_generation import generation_script

    stand_in = scripted_llm.register()
    stand_in.set_script(generation_script())
    return stand_in


def scripted_client(name: str, **settings):
    """An LLMClient on the stand-in under a fresh model name (so no earlier reply is in its cache)."""
    from pada.llm import LLMClient, LLMConfig

    return LLMClient(LLMConfig(model=f"scripted/{name}-{uuid.uuid4().hex[:6]}", backoff_base_s=0.001, **settings))


@pytest.fixture(scope="session")
def tiny_slm_dir(tmp_path_factory):
    """A tiny random Llama (~3 M params) with the SmolLM2 tokenizer and chat template, built once per session.

    Pass it anywhere a base model name/path is accepted (`pada.slm.train.finetune`,
    `pada.slm.generate.load_for_inference`, `--model`).
    """
    from doubles.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_slm"), seed=0)


def tiny_run_config(model_dir, **overrides) -> dict:
    """A whole PaDA run small enough for tests: tiny SLM, the scripted LLM stand-in, a few ARC examples."""
    config = {
        "task": "arc_challenge",
        "method": "pada",
        "iterations": 2,
        "seed": 0,
        "data": {"train_size": 16, "val_size": 12, "test_size": 12, "eval_train_limit": 8},
        "slm": {"model": str(model_dir), "eval_batch_size": 16,
                "train": {"epochs": 1, "batch_size": 8, "max_seq_len": 256}},
        "llm": {"model": "scripted/generator", "concurrency": 4},
        "judge": {"model": "scripted/judge", "concurrency": 4},
        "analysis": {"max_failures": 10, "batch_size": 5},
        "clustering": {"k_max": 4},
        "generation": {"batch_size": 2},
        # The stand-in's answer check is a crude reader (doubles/scripted_generation.py) that would reject
        # most samples and controls; tests of the check turn it on (tests/test_answer_check.py).
        "qc": {"answer_check": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory, tiny_slm_dir):
    """A finished 2-iteration PaDA run made by the real pipeline (tiny SLM, scripted LLM stand-in).

    Returns (runs_root, run_id). Tests must not modify it; copy it first (`shutil.copytree`) to edit.
    """
    from doubles.pada_script import install
    from pada.config import from_dict
    from pada.pipeline import Pipeline, start_run

    stand_in = install()  # a fresh stand-in, whatever earlier tests scripted
    runs_root = tmp_path_factory.mktemp("runs")
    config = from_dict(tiny_run_config(tiny_slm_dir))
    store = start_run(config, runs_root=runs_root, run_id="tiny-pada")
    assert Pipeline(store, config).run() == "completed"
    store.close()
    # Every request the stand-in received, for tests that check what the generator was shown.
    (runs_root / "scripted_requests.json").write_text(json.dumps(stand_in.received, default=str))
    return runs_root, "tiny-pada"
