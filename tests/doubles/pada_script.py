"""The scripted stand-in for every PaDA stage — a TEST STAND-IN, never a real LLM.

`pada_script()` maps each stage's request, `"<LLMCall stage>:<schema class name>"` (plus the bare
schema name, for callers that know no stage, such as an HTTP stub; "text" for a plain-text request), to the canned, deterministic
handlers of `scripted_analysis` and `scripted_generation`. `install()` registers a ScriptedLLM with
that script as provider `scripted`, so a run configured with `scripted/...` models works end to end.

PADA_SCRIPTED_DELAY_S (seconds, default 0) slows every reply, so a test can kill a run in the
middle of a stage.
"""

from __future__ import annotations

import os
import time

from doubles.scripted_analysis import analysis_script
from doubles.scripted_generation import generation_script

# Which stage asks for which schema (the stage names of pada.agents.*, the class names of their schemas).
STAGE_SCHEMAS: dict[str, tuple[str, ...]] = {
    "error_analysis": ("ErrorAnalysisBatch",),
    "patterns": ("PatternReply",),
    "strategies": ("StrategyReply",),
    "generation_pattern": ("GeneratedVariants",),
    "generation_error": ("GeneratedVariants",),
    "generation_rephrase": ("Rephrasings",),
    "quality": ("JudgeScores", "JudgeScoresWithStrategy", "JudgeAnswers"),
}


def pada_script() -> dict:
    """Handlers for every (stage, schema) the PaDA stages ask for, and for each schema alone."""
    by_schema = {**analysis_script(), **generation_script()}
    script = {f"{stage}:{name}": by_schema[name] for stage, names in STAGE_SCHEMAS.items() for name in names}
    script.update(by_schema)
    script["preflight:text"] = lambda messages, schema: "OK"  # the pipeline's "does the model answer" call
    delay = float(os.environ.get("PADA_SCRIPTED_DELAY_S", "0") or 0)
    if delay > 0:
        script = {key: _delayed(handler, delay) for key, handler in script.items()}
    return script


def _delayed(handler, delay: float):
    def reply(messages, schema):
        time.sleep(delay)
        return handler(messages, schema)
    return reply


def install():
    """A fresh ScriptedLLM answering every PaDA stage, registered as provider `scripted`."""
    from doubles import scripted_llm

    stand_in = scripted_llm.register()
    stand_in.set_script(pada_script())
    return stand_in
