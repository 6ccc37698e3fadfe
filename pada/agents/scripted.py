"""The scripted stand-in for every PaDA stage — a TEST STAND-IN, never a real LLM.

`python -m pada run` with `llm.model: scripted/...` (tests, demos of the
dashboard without a model) gets a ScriptedLLM that answers every agent's schema
with the canned, prompt-derived replies of `scripted_analysis` and
`scripted_generation`. The LLM client calls `register()` on first use of a
`scripted/` model; a stand-in a test installed itself is left alone.

PADA_SCRIPTED_DELAY_S (seconds, default 0) slows every reply, so a test can
kill a run in the middle of a stage.
"""

from __future__ import annotations

import os
import time

from pada.agents.scripted_analysis import analysis_script
from pada.agents.scripted_generation import generation_script


def pada_script() -> dict:
    """Handlers for every schema the PaDA stages ask for."""
    script = {**analysis_script(), **generation_script()}
    delay = float(os.environ.get("PADA_SCRIPTED_DELAY_S", "0") or 0)
    if delay > 0:
        script = {name: _delayed(handler, delay) for name, handler in script.items()}
    return script


def _delayed(handler, delay: float):
    def reply(messages, schema):
        time.sleep(delay)
        return handler(messages, schema)
    return reply


def register():
    """Install the PaDA stand-in as provider `scripted`, unless a stand-in is already installed."""
    from pada.llm import scripted
    from pada.llm.client import _litellm

    for item in _litellm().custom_provider_map:
        if item.get("provider") == "scripted":
            return item["custom_handler"]
    stand_in = scripted.register()
    stand_in.set_script(pada_script())
    return stand_in
