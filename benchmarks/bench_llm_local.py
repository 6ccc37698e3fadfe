"""Offline LLM speed: the old in-process provider against the llama.cpp engine, on the agents' own prompts (issue 11).

The prompts: 16 fixed requests built by the real agent prompt builders over ARC-Challenge training
examples (`pada.tasks.get_task`, data from ../shared/data or --data-dir), with their real pydantic schemas:
6 error analyses (failure-like inputs: a training question with a wrong letter as the SLM's reply; four
batches of 2 failures and two single re-asks), 6 generations (2 pattern-guided with a fixed strategy, 2
error-based, 2 rephrasings; 2 variants each, ARC's multiple-choice form) and 4 judge calls (2 samples each,
two with a strategy). Built in memory by the current tree, saved nowhere, sent unchanged to both sides; each
side validates with its own tree's schema class, or, where that class's JSON schema differs from the current
tree's, a frozen copy sending the current tree's (reported). `--quick`: 2 per stage and --max-tokens 96.

Each side x model runs in its own subprocess (memory and threads never mix) through that tree's
`LLMClient.complete_json_many` (cache off, schema_retries 0, temperature 0, max_tokens --max-tokens = 400):
  - old:    `local/qwen2.5-coder-0.5b` (transformers + outlines constrained decoding, micro-batching),
            imported from git revision --old-provider-rev (default 1455476, the last one with
            pada/llm/local.py), exported once with `git archive` under --cache-dir; torch threads = --threads;
  - engine: the current tree's client (`openai/<alias>` + api_base) against llama-server started by
            `pada.llm.engine.ensure_server` (-np 4, 4096 tokens per slot, -t --threads; --llama-server BIN sets
            PADA_LLAMA_SERVER); models 0.5b and 1.5b, the bundled GGUFs (`pada.bundled.bundled_gguf`) or
            --gguf-0.5b / --gguf-1.5b; a model whose GGUF is missing is skipped with the reason.
Per side x model: a warm-up (model load / server start, one request per schema: index and grammar builds
are not timed), then for schema on/off x concurrency 1/4 the three stages one after the other, as a run does
(analysis, then generation, then QC). The engine gets `cache_prompt: false`, so a prompt repeated from an
earlier configuration is read again, as the old provider does. "schema on" sends the schema
(response_format: constrained decoding); "schema off" sends the very same text (the schema instruction is
still in the prompt) as a plain-text request, and the reply is checked against the schema afterwards.

Reported: completion tokens/s (aggregate: completion tokens of all requests / wall of the three stages),
seconds per stage, valid JSON replies, replies that hit max_tokens, and the issue's two goals as ratios
side by side (engine c4 / old c4 on 0.5B, goal >= 2; engine 1.5B / old 0.5B, goal > 1). Constrained decoding
shapes how long replies are, so compare tokens/s, not only wall seconds. Nothing is asserted.

Run:  .venv/bin/python benchmarks/bench_llm_local.py [--sides old,engine] [--models 0.5b,1.5b] [--quick]
          [--concurrency 1,4] [--schema on,off] [--threads 2] [--max-tokens 400] [--json out.json]
A smoke run: --quick --concurrency 4 --schema on (old side: 4 minutes at load average 10 on 2 cores).
On a shared CPU the numbers move with other processes' load (the load average is printed): rerun when they
look disturbed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OLD_REV = "1455476"
OLD_MODEL = "local/qwen2.5-coder-0.5b"
STAGE_GROUPS = {"error_analysis": "analysis", "generation_pattern": "generation", "generation_error": "generation",
                "generation_rephrase": "generation", "quality": "qc"}
GROUPS = ("analysis", "generation", "qc")

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


# ---------------------------------------------------------------- the prompts (parent, current tree)

def build_prompts(quick: bool, data_dir: str | None) -> list[dict]:
    """The fixed requests: [{stage, messages, schema: spec, schema_sha}], analysis then generation then QC."""
    sys.path.insert(0, str(REPO))
    from pada.agents import error_analysis, generation, quality
    from pada.llm.client import schema_json
    from pada.records import Failure, Strategy, SyntheticSample
    from pada.tasks import get_task
    from pada.tasks.scoring import LETTERS

    task = get_task("arc_challenge", data_dir)
    train = task.pools().train
    form = task.sample_form
    description = task.title or task.name
    gen_config = generation.GenerationConfig(batch_size=2)

    def failure(ex) -> Failure:  # the SLM "answered" the next letter round the options
        options = ex.gold["options"]
        wrong = LETTERS[(LETTERS.index(ex.gold["label"]) + 1) % len(options)]
        return Failure(id=ex.id, split="validation", input=ex.prompt, ground_truth=ex.answer,
                       prediction=f"The answer is {wrong}.", extracted=wrong)

    strategies = [
        Strategy(cluster_id=0, category_name="physical science cause and effect", strategy_name="Heat and friction",
                 generation_approach="Ask which everyday action or material produces or transfers the most heat, "
                 "with distractors that sound plausible but reverse the effect.",
                 key_elements=["an everyday situation", "one correct physical effect", "reversed distractors"]),
        Strategy(cluster_id=1, category_name="life science classification", strategy_name="Traits and inheritance",
                 generation_approach="Ask whether a trait is inherited or learned, or which structure does a "
                 "job in an organism, naming a concrete plant or animal.",
                 key_elements=["a named organism", "inherited vs learned", "one clearly correct option"]),
    ]
    n_analysis, n_single, n_gen, n_qc = (1, 1, 1, 2) if quick else (4, 2, 2, 4)
    examples = iter(train)
    out: list[dict] = []

    def add(stage: str, messages: list[dict], spec: list, schema) -> None:
        out.append({"stage": stage, "messages": messages, "schema": spec, "schema_name": schema.__name__,
                    "schema_json": json.loads(schema_json(schema)),
                    "schema_sha": hashlib.sha256(schema_json(schema).encode()).hexdigest()[:16]})

    # analysis: batches of 2 failures, then single-failure re-asks (the agent's two request shapes)
    for size, count in ((2, n_analysis), (1, n_single)):
        for _ in range(count):
            views = [error_analysis.failure_view(failure(next(examples)), i, 1500) for i in range(size)]
            add(error_analysis.STAGE, error_analysis.analysis_messages(views, description), ["analysis", size],
                error_analysis.batch_schema(size))
    # generation: pattern, error, rephrase (n_gen of each in full, one of the first two in quick)
    branches = ["pattern", "error", "rephrase"] if not quick else ["pattern", "error"]
    for branch in branches:
        for k in range(n_gen if not quick else 1):
            ex = next(examples)
            ids = [f"bench-{branch}-{k}-{n}" for n in range(gen_config.batch_size)]
            plan = generation.BatchPlan(branch, ids, ex, strategy=strategies[k % 2] if branch == "pattern" else None,
                                        failure=failure(ex) if branch == "error" else None)
            schema = generation.batch_schema(plan, form)
            spec = ["rephrase", plan.size] if branch == "rephrase" else ["variants", plan.size, form.name]
            add(generation.STAGES[branch], generation.batch_messages(plan, None, gen_config, form), spec, schema)
    # QC: the judge scores 2 "synthetic" samples (other training examples) against an original
    for k in range(n_qc):
        original = next(examples)
        samples = [SyntheticSample(sample_id=f"bench-qc-{k}-{n}", branch="pattern", based_on_example=original.id,
                                   messages=next(examples).messages()) for n in range(2)]
        strategy = strategies[k % 2] if k % 2 == 0 else None
        batch = quality.QCBatch(original=original, strategy=strategy)
        add(quality.STAGE, quality.judge_messages(batch, samples, 1500), ["judge", 2, strategy is not None],
            quality.judge_schema(2, strategy is not None))
    return out


# ---------------------------------------------------------------- worker (subprocess, one tree's pada)

def schema_for(spec: list):
    """The pydantic schema a spec names, from the pada this process imported."""
    from pada.agents import error_analysis, generation, quality
    from pada.tasks import forms

    kind = spec[0]
    if kind == "analysis":
        return error_analysis.batch_schema(spec[1])
    if kind == "rephrase":
        return generation.rephrasings_schema(spec[1])
    if kind == "variants":
        form = next(v for v in vars(forms).values() if isinstance(v, forms.SampleForm) and v.name == spec[2])
        return generation.variants_schema(spec[1], form.item)
    if kind == "judge":
        return quality.judge_schema(spec[1], spec[2])
    raise ValueError(f"unknown schema spec {spec}")


def frozen_schema(name: str, schema: dict):
    """A pydantic model whose JSON schema is exactly `schema` (validated with jsonschema): for a tree whose own
    class differs from the current tree's, so both sides still send the very same request."""
    import copy

    import jsonschema
    from pydantic import BaseModel, ConfigDict, model_validator

    validator = jsonschema.Draft202012Validator(schema)

    class Frozen(BaseModel):
        model_config = ConfigDict(extra="allow")

        @model_validator(mode="before")
        @classmethod
        def _matches(cls, data):
            error = next(iter(validator.iter_errors(data)), None)
            if error is not None:
                raise ValueError(f"{list(error.absolute_path)}: {error.message[:200]}")
            return data

        @classmethod
        def model_json_schema(cls, *args, **kwargs):
            return copy.deepcopy(schema)

    Frozen.__name__ = Frozen.__qualname__ = name
    return Frozen


def worker(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    sys.path.insert(0, job["pada_root"])
    if job.get("threads"):
        os.environ["PADA_LOCAL_THREADS"] = str(job["threads"])
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import pada
    from pada.llm import JSONRequest, LLMClient, LLMConfig
    from pada.llm.client import schema_json, with_schema_instruction
    from pada.llm.jsonparse import parse_and_validate

    assert Path(pada.__file__).resolve().is_relative_to(Path(job["pada_root"]).resolve()), pada.__file__
    prompts = job["prompts"]
    schemas, mismatched = [], 0
    for p in prompts:  # this tree's real class, unless it differs from the one the prompts were built with
        try:
            schema = schema_for(p["schema"])
        except Exception:  # noqa: BLE001 - the spec's builder is not in this tree
            schema = None
        if schema is None or hashlib.sha256(schema_json(schema).encode()).hexdigest()[:16] != p["schema_sha"]:
            schema, mismatched = frozen_schema(p["schema_name"], p["schema_json"]), mismatched + 1
        schemas.append(schema)
    cap = job["max_tokens"]

    def client(concurrency: int) -> LLMClient:
        return LLMClient(LLMConfig(model=job["model"], api_base=job.get("api_base"), concurrency=concurrency,
                                   cache_dir=None, schema_retries=0, max_retries=1, timeout_s=1800,
                                   temperature=0.0, max_tokens=cap, extra_params=job.get("extra_params") or {}))

    def request(i: int, constrained: bool, max_tokens: int) -> JSONRequest:
        p, schema = prompts[i], schemas[i]
        if constrained:
            return JSONRequest(p["messages"], schema, p["stage"], temperature=0.0, max_tokens=max_tokens)
        # the same text the schema request sends (instruction included), as a plain-text request
        return JSONRequest(with_schema_instruction(p["messages"], schema), None, p["stage"], temperature=0.0,
                           max_tokens=max_tokens)

    def log(text: str) -> None:
        print(f"[{job['label']}] {text}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    warm = client(1)
    warm.warm_up()
    first_of_schema = list({p["schema_sha"]: i for i, p in reversed(list(enumerate(prompts)))}.values())
    warm.complete_json_many([request(i, True, 4) for i in first_of_schema] + [request(0, False, 4)])
    warm_s = time.perf_counter() - started
    log(f"warm-up {warm_s:.1f} s (load, litellm import, {len(first_of_schema)} schemas)")

    rows = []
    for schema_on in job["schema_modes"]:
        for concurrency in job["concurrency"]:
            llm = client(concurrency)
            stage_s, tokens, valid, at_cap, errors = {}, 0, 0, 0, []
            for group in GROUPS:
                indices = [i for i, p in enumerate(prompts) if STAGE_GROUPS[p["stage"]] == group]
                if not indices:
                    continue
                t0 = time.perf_counter()
                results = llm.complete_json_many([request(i, schema_on, cap) for i in indices])
                stage_s[group] = time.perf_counter() - t0
                for i, result in zip(indices, results):
                    tokens += result.call.completion_tokens
                    at_cap += result.call.completion_tokens >= cap
                    if result.error and not result.raw:
                        errors.append(result.error[:200])
                    if schema_on:
                        valid += result.ok
                    else:
                        with contextlib.suppress(Exception):
                            parse_and_validate(result.raw or "", schemas[i])
                            valid += 1
            wall = sum(stage_s.values())
            row = {"side": job["side"], "model": job["model_label"], "concurrency": concurrency,
                   "schema": schema_on, "requests": len(prompts), "completion_tokens": tokens, "wall_s": wall,
                   "tokens_per_s": tokens / wall if wall else 0.0, "stage_s": stage_s, "valid": valid,
                   "at_cap": at_cap, "errors": errors[:3]}
            rows.append(row)
            log(f"schema {'on ' if schema_on else 'off'} c{concurrency}: {tokens} tokens in {wall:.1f} s = "
                f"{row['tokens_per_s']:.1f} tok/s, valid {valid}/{len(prompts)}, at cap {at_cap}"
                + (f", errors: {errors[0]}" if errors else ""))
    Path(job["out"]).write_text(json.dumps({"warm_s": warm_s, "schema_mismatches": mismatched, "rows": rows}))
    return 0


# ---------------------------------------------------------------- the two sides (parent)

def old_tree(rev: str, cache: Path) -> Path:
    """The `pada` package of git revision `rev`, exported once (git archive) into the cache; its root."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                         check=True, capture_output=True, text=True).stdout.strip()
    root = cache / f"pada-{sha[:12]}"
    if not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"pada-{sha[:12]}-", dir=cache))
        archive = subprocess.run(["git", "-C", str(REPO), "archive", sha, "pada"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
        if not (tmp / "pada" / "llm" / "local.py").exists():
            raise SystemExit(f"revision {rev} has no pada/llm/local.py: pick one before the old provider's removal")
        (tmp / ".complete").write_text(sha)
        tmp.rename(root)
    return root


def old_missing(rev: str) -> str:
    """Why this interpreter cannot run the old provider ("" if it can): outlines left requirements.txt with it."""
    import importlib.util

    missing = [name for name in ("torch", "transformers", "outlines", "outlines_core")
               if importlib.util.find_spec(name) is None]
    if not missing:
        return ""
    pins = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:requirements.txt"], capture_output=True,
                          text=True).stdout.splitlines()
    wanted = [line.strip() for line in pins if line.split("==")[0].strip().replace("-", "_") in missing]
    return f"missing {', '.join(missing)}: .venv/bin/pip install {' '.join(wanted) or ' '.join(missing)}"


def gguf_for(label: str, override: str | None) -> tuple[Path | None, str]:
    """(GGUF path, "") for a model label, or (None, why it is skipped)."""
    if override:
        return (Path(override), "") if Path(override).is_file() else (None, f"{override} does not exist")
    from pada import bundled

    alias = getattr(bundled, "QWEN_CODER" if label == "0.5b" else "QWEN_CODER_1_5B", None)
    if alias is None or not hasattr(bundled, "bundled_gguf"):
        if label == "0.5b":
            return bundled.qwen_coder_gguf(), ""
        return None, "pada.bundled has no 1.5B teacher GGUF (pass --gguf-1.5b PATH)"
    try:
        return Path(bundled.bundled_gguf(alias)), ""
    except Exception as error:  # noqa: BLE001 - the package is not installed, a hash mismatch, ...
        return None, f"{alias}: {error}"[:300]


def start_engine(gguf: Path, args, log_dir: Path):
    """(server, how) from `pada.llm.engine.ensure_server`: -np 4 slots of 4096 tokens, -t --threads."""
    from pada.llm.engine import ensure_server, server_binary

    if args.llama_server:
        os.environ["PADA_LLAMA_SERVER"] = args.llama_server
    binary = server_binary()
    server = ensure_server(gguf, parallel=4, ctx_per_slot=4096, threads=args.threads, log_dir=log_dir)
    how = f"pada.llm.engine.ensure_server ({binary})"
    if not getattr(server, "started_here", True):  # its slots and CPUs are shared with whoever else uses it
        how += f"; WARNING: reused the server pid {server.pid} another process started, so its load counts too"
        print(f"engine: {how}", file=sys.stderr, flush=True)
    return server, how


def run_worker(job: dict, work: Path) -> dict:
    path = work / f"job-{job['label']}.json"
    job["out"] = str(work / f"result-{job['label']}.json")
    path.write_text(json.dumps(job))
    env = {**os.environ, "PYTHONPATH": job["pada_root"]}
    code = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(path)], env=env,
                          cwd=job["pada_root"]).returncode
    if code != 0 or not Path(job["out"]).exists():
        raise RuntimeError(f"{job['label']} worker exited with status {code}")
    return json.loads(Path(job["out"]).read_text())


# ---------------------------------------------------------------- report

def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def report(rows: list[dict], notes: list[str], goals: list[tuple[str, str, str]]) -> str:
    lines = ["| side | model | conc | schema | completion tok/s | tokens | wall s | analysis s | generation s | "
             "QC s | valid JSON | at max_tokens |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        stages = " | ".join(f"{r['stage_s'][g]:.1f}" if g in r["stage_s"] else "-" for g in GROUPS)
        lines.append(f"| {r['side']} | {r['model']} | {r['concurrency']} | {'on' if r['schema'] else 'off'} | "
                     f"{r['tokens_per_s']:.1f} | {r['completion_tokens']} | {r['wall_s']:.1f} | {stages} | "
                     f"{r['valid']}/{r['requests']} | {r['at_cap']} |")
    lines += ["", "| goal | ratio (completion tok/s) | target |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {target} |" for name, value, target in goals]
    return "\n".join(lines + [""] + [f"- {note}" for note in notes])


def goal_rows(rows: list[dict]) -> list[tuple[str, str, str]]:
    def tps(side: str, model: str, conc: int, schema: bool) -> float | None:
        return next((r["tokens_per_s"] for r in rows if (r["side"], r["model"], r["concurrency"], r["schema"])
                     == (side, model, conc, schema)), None)

    goals = []
    for schema in (True, False):
        mode = "schema on" if schema else "schema off"
        goals.append((f"engine 0.5B c4 / old 0.5B c4, {mode}", ratio(tps("engine", "0.5b", 4, schema),
                                                                    tps("old", "0.5b", 4, schema)), ">= 2"))
        goals.append((f"engine 0.5B c4 / old 0.5B c1, {mode}", ratio(tps("engine", "0.5b", 4, schema),
                                                                    tps("old", "0.5b", 1, schema)), "(context)"))
        for conc in (4, 1):
            goals.append((f"engine 1.5B c{conc} / old 0.5B c{conc}, {mode}",
                          ratio(tps("engine", "1.5b", conc, schema), tps("old", "0.5b", conc, schema)), "> 1"))
    return goals


# ---------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", default="old,engine", help="comma list of old, engine")
    parser.add_argument("--models", default="0.5b,1.5b", help="comma list of 0.5b, 1.5b (old runs 0.5b only)")
    parser.add_argument("--concurrency", default="1,4", help="comma list of client concurrencies")
    parser.add_argument("--schema", default="on,off", help="comma list of on (JSON schema), off (plain text)")
    parser.add_argument("--quick", action="store_true", help="2 prompts per stage and --max-tokens 96")
    parser.add_argument("--max-tokens", type=int, default=None, help="reply cap per request (default 400)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (old) / llama-server -t (engine)")
    parser.add_argument("--old-provider-rev", default=DEFAULT_OLD_REV, help="git revision with pada/llm/local.py")
    parser.add_argument("--cache-dir", default=None, help="where the old revision goes (default ~/.cache/pada-bench)")
    parser.add_argument("--llama-server", default=None, help="llama-server binary (sets PADA_LLAMA_SERVER)")
    parser.add_argument("--gguf-0.5b", dest="gguf_05", default=None, help="GGUF instead of the bundled 0.5B")
    parser.add_argument("--gguf-1.5b", dest="gguf_15", default=None, help="GGUF instead of the bundled teacher")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)

    sides = [s for s in args.sides.split(",") if s]
    models = [m for m in args.models.split(",") if m]
    if set(sides) - {"old", "engine"} or set(models) - {"0.5b", "1.5b"}:
        parser.error("--sides takes old,engine and --models 0.5b,1.5b")
    concurrency = [int(c) for c in args.concurrency.split(",") if c]
    schema_modes = [{"on": True, "off": False}[m] for m in args.schema.split(",") if m]
    max_tokens = args.max_tokens or (96 if args.quick else 400)
    prompts = build_prompts(args.quick, args.data_dir)
    counts = {g: sum(STAGE_GROUPS[p["stage"]] == g for p in prompts) for g in GROUPS}
    cache = Path(args.cache_dir or Path.home() / ".cache" / "pada-bench").expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pada-bench-llm-local-"))
    notes = [f"{len(prompts)} prompts ({', '.join(f'{n} {g}' for g, n in counts.items())}), ARC-Challenge train, "
             f"temperature 0, max_tokens {max_tokens}, {args.threads} threads per side, load average at start "
             f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"]
    print(notes[0], flush=True)
    base = {"prompts": prompts, "max_tokens": max_tokens, "concurrency": concurrency, "schema_modes": schema_modes,
            "threads": args.threads}
    rows: list[dict] = []

    why_not_old = old_missing(args.old_provider_rev) if "old" in sides and "0.5b" in models else ""
    if why_not_old:
        notes.append(f"old 0.5b: skipped: {why_not_old}")
        print(notes[-1], flush=True)
    elif "old" in sides and "0.5b" in models:
        root = old_tree(args.old_provider_rev, cache)
        result = run_worker({**base, "label": "old-0.5b", "side": "old", "model_label": "0.5b", "model": OLD_MODEL,
                             "pada_root": str(root)}, work)
        rows += result["rows"]
        notes.append(f"old 0.5B: {OLD_MODEL} from revision {args.old_provider_rev} ({root}); warm-up "
                     f"{result['warm_s']:.1f} s" + (f"; {result['schema_mismatches']} schemas differ from the "
                                                    "current tree's: sent as the current tree's JSON schema, "
                                                    "checked with jsonschema" if result["schema_mismatches"] else ""))
    if "engine" in sides:
        for label in models:
            gguf, why = gguf_for(label, args.gguf_05 if label == "0.5b" else args.gguf_15)
            if gguf is None:
                notes.append(f"engine {label}: skipped: {why}")
                print(notes[-1], flush=True)
                continue
            t0 = time.perf_counter()
            try:
                server, how = start_engine(gguf, args, work)
            except Exception as error:  # noqa: BLE001 - no engine module or binary yet, a server that won't start
                notes.append(f"engine {label}: skipped: {type(error).__name__}: {error}"[:400])
                print(notes[-1], flush=True)
                continue
            start_s = time.perf_counter() - t0
            try:
                result = run_worker({**base, "label": f"engine-{label}", "side": "engine", "model_label": label,
                                     "model": f"openai/{server.model_name}", "api_base": server.api_base,
                                     "extra_params": {"extra_body": {"cache_prompt": False}},
                                     "pada_root": str(REPO)}, work)
            finally:
                server.stop()
            rows += result["rows"]
            notes.append(f"engine {label}: {server.model_name} ({gguf}) via {how}, server start {start_s:.1f} s, "
                         f"warm-up {result['warm_s']:.1f} s")
    if "old" in sides and "0.5b" not in models:
        notes.append("old: skipped (it runs 0.5b only)")

    print()
    print(report(rows, notes, goal_rows(rows)))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "notes": notes, "goals": goal_rows(rows)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
