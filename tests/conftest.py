"""Shared test settings: nothing in the suite may touch the network."""

import os

# Set before anything imports litellm / transformers.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_slm_dir(tmp_path_factory):
    """A tiny random Llama (~3 M params) with the SmolLM2 tokenizer and chat template, built once per session.

    Pass it anywhere a base model name/path is accepted (`pada.slm.train.finetune`,
    `pada.slm.generate.load_for_inference`, `--model`).
    """
    from pada.slm.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_slm"), seed=0)
