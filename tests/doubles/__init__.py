"""Test doubles: the scripted LLM stand-in and the tiny test model. Never part of the product.

- `scripted_llm.ScriptedLLM`: a litellm `CustomLLM` that answers from a script keyed on the
  request's stage and schema, records every request and fails on demand; `scripted_llm.register()`
  installs it as provider `scripted` through `pada.llm.client.register_provider`.
- `pada_script.pada_script()`: a script with plausible, deterministic replies for every PaDA
  stage (`scripted_analysis`, `scripted_generation`); `pada_script.install()` registers both.
- `pada_cli`: `python -m doubles.pada_cli run ...` is `python -m pada run ...` with the stand-in
  installed first, for tests that run the CLI in a subprocess.
- `tiny_model.build_tiny_model(dir)`: a ~3 M-parameter random Llama with the SmolLM2 tokenizer.

tests/conftest.py puts this folder's parent on sys.path (pytest does, for a rootdir conftest),
so tests import these as `doubles.<module>`.
"""
