"""TEST STAND-IN: canned, deterministic LLM replies for the analysis stages. Not a model.

`analysis_script()` returns `{schema_class_name: handler}` for `doubles.scripted_llm.ScriptedLLM`
(`set_script(...)`), covering the schemas of error analysis (`ErrorAnalysisBatch`), pattern
categorisation (`PatternReply`) and strategy drafting (`StrategyReply`). Each handler reads
the rendered prompt (the "### Sample N" blocks, "- [sample N]" lines and the "Category:" /
"Pattern:" lines of pada/llm/prompts/*.jinja2) and answers with valid, plausible JSON:
one analysis per listed sample, a pattern named after the cluster's most common scenario,
a strategy named after its category. Same prompt, same reply. Its "insights" are keyword
rules, not analysis.

Which handler answers is chosen by stage and schema (`pada_script`), never by the prompt. The
prompt is only read for content: when a template is reworded so that the blocks are not found,
the reply is still valid for the schema (as many items as it asks for, numbered from the
"sample N" mentions or 1..n), just with generic text.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable

Handler = Callable[[list[dict], dict], str]

_SAMPLE_BLOCK = re.compile(
    r"^### Sample (\d+)\nQuery:\n(.*?)\n\nModel response:\n(.*?)\n\nGround truth:\n(.*?)(?=\n### Sample |\n\S[^\n]*:\n- |\Z)",
    re.DOTALL | re.MULTILINE,
)
_ANALYSIS_LINE = re.compile(r"^- \[sample (\d+)\] Cause: (.*?) Scenario: (.*)$", re.MULTILINE)
_TARGET = re.compile(r"^Category: (.*)\nPattern: (.*)$", re.MULTILINE)

# (category, what went wrong) chosen by keywords in the query; first match wins.
_RULES: list[tuple[tuple[str, ...], str, str]] = [
    (("def ", "function", "return ", "python"), "code generation",
     "wrote code that does not meet the specification in the docstring"),
    (("passage", "context", "article", "paragraph"), "reading comprehension",
     "took the answer from the wrong part of the passage"),
    (("how many", "how much", "total", "each", "per "), "multi-step arithmetic",
     "made a calculation error in one of the intermediate steps"),
    (("a.", "(a)", "a)", "options", "choices"), "multiple-choice reasoning",
     "chose a plausible distractor instead of the option the question supports"),
]
_DEFAULT = ("general question answering", "misread what the question asks for")


def _user_text(messages: list[dict]) -> str:
    return "\n".join(m.get("content", "") for m in messages if m.get("role") == "user")


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _classify(query: str) -> tuple[str, str]:
    lowered = query.lower()
    for keywords, category, cause in _RULES:
        if any(word in lowered for word in keywords):
            return category, cause
    return _DEFAULT


def error_analysis_reply(messages: list[dict], schema: dict | None = None) -> str:
    """One analysis per sample block of the prompt, as many as the schema asks for."""
    text = _user_text(messages)
    analyses = []
    for idx, query, response, truth in _SAMPLE_BLOCK.findall(text):
        category, cause = _classify(query)
        analyses.append({
            "sample_idx": int(idx),
            "error_cause": f"The model {cause}: it answered '{_short(response)}' instead of '{_short(truth)}'.",
            "scenario_category": category,
        })
    wanted = _min_items(schema, "analyses")
    if wanted is not None and len(analyses) < wanted:  # the layout was not recognised: stay schema-valid
        seen = {item["sample_idx"] for item in analyses}
        mentioned = [int(n) for n in dict.fromkeys(_MENTION.findall(text)) if int(n) not in seen]
        spare = mentioned + [n for n in range(1, 10 * wanted) if n not in seen and n not in mentioned]
        category, cause = _classify(text)
        analyses += [{"sample_idx": n, "error_cause": f"The model {cause}.", "scenario_category": category}
                     for n in spare[: wanted - len(analyses)]]
    return json.dumps({"analyses": analyses})


_MENTION = re.compile(r"\b[Ss]ample (\d+)")


def _min_items(schema: dict | None, field: str) -> int | None:
    try:
        return int(schema["properties"][field]["minItems"])
    except (KeyError, TypeError, ValueError):
        return None


def pattern_reply(messages: list[dict], schema: dict | None = None) -> str:
    """Names the cluster after its most common scenario; the first three samples represent it."""
    lines = _ANALYSIS_LINE.findall(_user_text(messages))
    if not lines:
        return json.dumps({"category_name": "Unclassified errors", "error_pattern": "No explanations were given.",
                           "representative_samples": []})
    scenario = Counter(s.strip() for _, _, s in lines).most_common(1)[0][0]
    first_cause = next(c for _, c, s in lines if s.strip() == scenario)
    return json.dumps({
        "category_name": f"{scenario.capitalize()} errors",
        "error_pattern": (f"In {len(lines)} failures about {scenario}, the model goes wrong in the same way. "
                          f"Typical case: {first_cause}"),
        "representative_samples": [int(n) for n, _, _ in lines[:3]],
    })


def strategy_reply(messages: list[dict], schema: dict | None = None) -> str:
    """A strategy named after the pattern's category, with three concrete key elements."""
    found = _TARGET.findall(_user_text(messages))
    category, pattern = found[-1] if found else ("the observed errors", "")
    return json.dumps({
        "strategy_name": f"Practice: {category}",
        "generation_approach": (f"Take each training example and write a new question of the same format that "
                                f"targets {category.lower()}. {_short(pattern, 160)} The answer works through "
                                f"the step where the model used to fail."),
        "key_elements": [
            f"a situation of the kind '{category}'",
            "the same format as the original example",
            "a correct answer that shows the critical step explicitly",
        ],
    })


def analysis_script() -> dict[str, Handler]:
    """`{schema class name: handler}` for ScriptedLLM.set_script, covering all analysis stages."""
    return {
        "ErrorAnalysisBatch": error_analysis_reply,
        "PatternReply": pattern_reply,
        "StrategyReply": strategy_reply,
    }
