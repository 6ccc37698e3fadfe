"""Run several methods (and PaDA's ablations) on one config over seeds, and tabulate them like the paper's Table 1.

One comparison = variants x seeds runs, all with the same task, sizes, models and synthetic budget:
- variants: the methods asked for (`pada`, `vanilla`, `auggpt`, `llms_as_instructors`), plus with
  `ablations=True` PaDA with one part switched off (`pada/no_patterns`, `pada/no_train_errors`,
  `pada/no_qc`, the paper's Table 2);
- seeds: `config.seed`, `config.seed + 1`, ... The run seed drives the training subset
  (`Task.splits`), the training order and adapter init (the pipeline passes it to `LoRAConfig.seed`),
  and the LLM sampling salts (generation salts carry it); validation and test sets do not depend on it,
  so every run is scored on the same test items.

Per run and seed the reported iteration is the one its validation metric picks (`selected`), never the
best test number. Across seeds: mean and standard deviation of that test metric, and the difference to
vanilla with a paired bootstrap interval over the test items (`pada.stats`, which says why items are
resampled with all their seeds together).

Which runs, and how they run: `plan_runs` lists a comparison's runs (variant, seed, config) and `execute_plan`
picks or creates each one's run directory here, on the driver (reusing a run of the same config), then hands
the runs to an executor (`pada.executors`: one after another in this process, or as Ray tasks) and reads
their rows. `python -m pada sweep` plans many comparisons and executes them together.

Outputs (`write_comparison`): `comparison.md` (the summary table, then test metric per iteration),
`comparison.csv` (one row per variant, seed and iteration; what the dashboard charts) and
`comparison_summary.csv` (the summary table's columns, one row per variant).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pada.config import RunConfig, from_dict
from pada.stats import CONFIDENCE, RESAMPLES, mean_std, paired_by_id
from pada.store import RunStore

ABLATIONS = ("no_patterns", "no_train_errors", "no_qc")  # AblationConfig's switches, the paper's Table 2
BASELINE = "vanilla"  # what every difference and interval is against
SUMMARY_CSV = "comparison_summary.csv"


@dataclass
class ComparisonRow:
    method: str  # the variant: a method name, or `pada/<ablation>`
    run_id: str
    iteration: int
    metric: str
    value: float  # test-set metric of this iteration
    validation: float | None  # validation metric of this iteration: what selects the reported iteration
    tokens: int  # LLM tokens the whole run used
    cost_usd: float
    synthetic: int  # synthetic samples in this iteration's training set
    seed: int = 0  # the run's seed


@dataclass(frozen=True)
class Variant:
    """One column group of the comparison: a method, optionally with one PaDA ablation switched on."""

    method: str
    ablation: str | None = None

    @property
    def label(self) -> str:
        return f"{self.method}/{self.ablation}" if self.ablation else self.method


def variants(methods: list[str], ablations: bool = False) -> list[Variant]:
    """The methods in the order given, then (with `ablations`) PaDA with each ablation."""
    found = [Variant(method) for method in dict.fromkeys(methods)]
    return found + ([Variant("pada", name) for name in ABLATIONS] if ablations else [])


def variant_config(config: RunConfig, variant: Variant, seed: int) -> RunConfig:
    """`config` with the variant's method, its ablation (only that one on) and `seed`; everything else shared."""
    data = dict(config.to_dict(), method=variant.method, seed=seed)
    if variant.ablation:
        data["ablations"] = {name: name == variant.ablation for name in ABLATIONS}
    return from_dict(data, source=f"compare ({variant.label}, seed {seed})")


def seed_list(config: RunConfig, n_seeds: int) -> list[int]:
    if n_seeds < 1:
        raise ValueError(f"need at least one seed, got {n_seeds}")
    return [config.seed + k for k in range(n_seeds)]


@dataclass(frozen=True)
class PlannedRun:
    """One run of a comparison: a variant at a seed, with the config it runs."""

    variant: Variant
    seed: int
    config: RunConfig
    tag: str = ""  # what else tells it apart in progress lines (a sweep's task and size)

    @property
    def name(self) -> str:
        return f"[{self.tag + ' ' if self.tag else ''}{self.variant.label} seed {self.seed}]"


def plan_runs(config: RunConfig, methods: list[str], ablations: bool = False, seeds: int | list[int] = 1,
              tag: str = "") -> list[PlannedRun]:
    """The runs of one comparison, seed-major: every variant at the first seed, then every variant at the
    next, so an interrupted compare already has complete tables for its first seeds. `seeds`: a count
    (`config.seed`, `config.seed + 1`, ...) or the seeds themselves."""
    seed_values = seed_list(config, seeds) if isinstance(seeds, int) else list(seeds)
    return [PlannedRun(variant, seed, variant_config(config, variant, seed), tag)
            for seed in seed_values for variant in variants(methods, ablations)]


@dataclass
class RunResult:
    """What became of a planned run: its run and table rows, or why it failed."""

    planned: PlannedRun
    run_id: str
    rows: list[ComparisonRow]
    error: str | None = None


def execute_plan(plan: list[PlannedRun], runs_root=None, reuse: bool = True, executor=None) -> list[RunResult]:
    """Run every planned run through `executor` (default: one after another in this process) and read
    each one's rows.

    Which run directory a planned run uses is decided here, on the driver: with `reuse`, a run whose exact
    config (method, ablations and seed included) already exists under `runs_root` is not run again: a
    completed run is read as it is, a stopped or killed one is resumed (so an interrupted compare, or a
    `pada run` of the same config, is picked up instead of paid for twice); else a new run is created. A
    run that failed keeps its error and no rows; the others' rows are all there."""
    from pada.executors import LocalExecutor, RunJob
    from pada.pipeline import start_run

    executor = executor or LocalExecutor()
    run_dirs: dict[int, str] = {}

    def jobs():  # a generator: the local executor runs each job before the next run is looked up
        for index, planned in enumerate(plan):
            store = reusable_run(planned.config, runs_root) if reuse else None
            if store is None:
                store = start_run(planned.config, runs_root=runs_root)
                print(f"{planned.name} run {store.run_id}", flush=True)
            else:
                print(f"{planned.name} reusing run {store.run_id} ({store.state().status})", flush=True)
            run_dirs[index] = str(store.path.resolve())  # absolute: a Ray worker may start elsewhere
            state = store.state()
            store.close()
            if state.status != "completed":
                yield RunJob(planned.name, run_dirs[index], planned.config, state.updated_at)

    errors = {outcome.job.run_dir: outcome.error for outcome in executor.run(jobs()) if outcome.error}
    results = []
    for index, planned in enumerate(plan):
        run_dir = run_dirs[index]
        rows = []
        if run_dir not in errors:
            with RunStore.open(run_dir, readonly=True) as store:
                rows = rows_for_run(store, planned.variant.label, planned.seed)
        results.append(RunResult(planned, Path(run_dir).name, rows, errors.get(run_dir)))
    return results


def compare_runs(config: RunConfig, methods: list[str], runs_root=None, reuse: bool = True,
                 ablations: bool = False, seeds: int = 1, executor=None) -> list[ComparisonRow]:
    """Run `config` once per variant and seed (same budget; `plan_runs`, `execute_plan`) and collect the
    test metric per iteration of every run that did not fail."""
    results = execute_plan(plan_runs(config, methods, ablations, seeds), runs_root, reuse, executor)
    return [row for result in results for row in result.rows]


def _canonical(config: dict) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def reusable_run(config: RunConfig, runs_root=None) -> RunStore | None:
    """The newest run with exactly `config`: a completed one first, else one that can be resumed
    (stopped, failed, killed, awaiting review); None when there is none or it is running now (its runner lock
    is held, also by a Ray task running it on another node). Opened read-only: an executor opens it to run it."""
    from pada.runs import effective_status
    from pada.store import list_runs

    wanted = _canonical(config.to_dict())
    same = [run for run in list_runs(runs_root) if run.config and _canonical(run.config) == wanted]
    for run in sorted(same, key=lambda run: run.status != "completed"):  # stable: newest first within each
        if effective_status(run.status, run.pid, run.path) != "running":  # the run lock, not the pid alone
            return RunStore.open(run.path, readonly=True)
    return None


def rows_for_run(store: RunStore, method: str, seed: int | None = None) -> list[ComparisonRow]:
    from pada.runs import headline_metric, usage_totals

    config = store.config()
    seed = int(config.get("seed", 0)) if seed is None else seed
    metric = headline_metric(config, {row.name for row in store.metrics()})
    usage = usage_totals(store)
    first = store.training_set_size(1)
    validation = {row.iteration: row.value for row in store.metrics(split="validation", name=metric)}
    return [ComparisonRow(method, store.run_id, row.iteration, metric, row.value, validation.get(row.iteration),
                          int(usage["tokens"]), usage["cost_usd"], store.training_set_size(row.iteration) - first,
                          seed)
            for row in store.metrics(split="test", name=metric)]


def selected(rows: list[ComparisonRow]) -> ComparisonRow:
    """The iteration a user would ship: the best validation metric (earliest on a tie), never the best test.

    `rows` are one run's iterations (one variant at one seed)."""
    return max(rows, key=lambda row: (row.validation if row.validation is not None else float("-inf"), -row.iteration))


def runs_of(rows: list[ComparisonRow]) -> dict[str, dict[int, list[ComparisonRow]]]:
    """{variant: {seed: that run's rows}}, variants in first-seen order, seeds ascending."""
    grouped: dict[str, dict[int, list[ComparisonRow]]] = {}
    for row in rows:
        grouped.setdefault(row.method, {}).setdefault(row.seed, []).append(row)
    return {method: dict(sorted(by_seed.items())) for method, by_seed in grouped.items()}


# ------------------------------------------------------------------ per-item scores


ItemScores = dict[tuple[str, int], dict[str, float]]  # (variant, seed) -> {test item id: score}


def prediction_scores(store: RunStore, iteration: int, metric: str) -> dict[str, float]:
    """Per test item, the headline metric's score at `iteration`: the prediction's own value of `metric`
    where the scorer reports one (SQuAD's exact_match), else its correctness (1/0)."""
    return {p.id: float(p.metrics.get(metric, float(p.correct))) for p in store.predictions(iteration, "test")}


def selected_item_scores(rows: list[ComparisonRow], runs_root=None) -> ItemScores:
    """Per (variant, seed), the per-item test scores of the iteration validation selected (read-only stores)."""
    scores: ItemScores = {}
    for method, by_seed in runs_of(rows).items():
        for seed, mine in by_seed.items():
            chosen = selected(mine)
            store = RunStore.open(chosen.run_id, runs_root=runs_root, readonly=True)
            try:
                scores[method, seed] = prediction_scores(store, chosen.iteration, chosen.metric)
            finally:
                store.close()
    return scores


# ------------------------------------------------------------------ summary


@dataclass
class MethodSummary:
    """One row of the summary table: a variant at its validation-selected iteration, over its seeds."""

    method: str
    metric: str
    seeds: list[int]
    iterations: list[int]  # the selected iteration, per seed
    test_mean: float  # mean over seeds of the selected iteration's test metric
    test_std: float | None  # sample std (ddof=1) over seeds; None for one seed
    validation_mean: float | None
    difference: float | None  # mean of (variant - vanilla) on matched items and paired seeds; None without vanilla
    ci_low: float | None  # paired bootstrap interval of `difference`; None without per-item scores
    ci_high: float | None
    items: int | None  # test items the interval pairs (matched by id)
    synthetic: float  # synthetic samples in the selected iteration's training set, mean over seeds
    tokens: float  # LLM tokens per run, mean over seeds
    cost_usd: float  # per run, mean over seeds
    confidence: float = CONFIDENCE
    resamples: int = RESAMPLES
    per_seed: dict[int, float] = field(default_factory=dict)  # seed -> selected test metric


def summarise(rows: list[ComparisonRow], item_scores: ItemScores | None = None,
              baseline: str = BASELINE) -> list[MethodSummary]:
    """One summary per variant: select per seed by validation, then aggregate over seeds.

    With `item_scores` ({(variant, seed): {item id: score}} of the selected iterations) the difference to
    `baseline` is computed on matched items and paired seeds, with a paired bootstrap interval
    (`pada.stats.paired_by_id`). Without them (or for an item set that does not pair) the difference is the
    mean over paired seeds of the metric differences, and there is no interval.
    """
    grouped = runs_of(rows)
    chosen = {method: {seed: selected(mine) for seed, mine in by_seed.items()} for method, by_seed in grouped.items()}
    base = chosen.get(baseline)
    summaries = []
    for method, by_seed in chosen.items():
        picks = list(by_seed.values())
        test_mean, test_std = mean_std([row.value for row in picks])
        validations = [row.validation for row in picks if row.validation is not None]
        difference = ci_low = ci_high = items = None
        if base is not None:
            paired = [seed for seed in by_seed if seed in base]
            interval = None
            if item_scores is not None:
                interval = paired_by_id({s: item_scores[method, s] for s in paired if (method, s) in item_scores},
                                        {s: item_scores[baseline, s] for s in paired if (baseline, s) in item_scores})
            if interval is not None:
                difference, ci_low, ci_high, items = interval.difference, interval.low, interval.high, interval.items
            elif paired:
                difference = mean_std([by_seed[s].value - base[s].value for s in paired])[0]
        first = picks[0]
        summaries.append(MethodSummary(
            method=method, metric=first.metric, seeds=list(by_seed), iterations=[row.iteration for row in picks],
            test_mean=test_mean, test_std=test_std,
            validation_mean=mean_std(validations)[0] if validations else None,
            difference=difference, ci_low=ci_low, ci_high=ci_high, items=items,
            synthetic=mean_std([row.synthetic for row in picks])[0],
            tokens=mean_std([row.tokens for row in picks])[0], cost_usd=mean_std([row.cost_usd for row in picks])[0],
            per_seed={seed: row.value for seed, row in by_seed.items()}))
    return summaries


# ------------------------------------------------------------------ output


ROW_COLUMNS = ["method", "seed", "run_id", "iteration", "metric", "value", "validation", "selected", "tokens",
               "cost_usd", "synthetic"]
SUMMARY_COLUMNS = ["method", "metric", "seeds", "selected_iterations", "test_mean", "test_std", "validation_mean",
                   "difference_vs_vanilla", "ci_low", "ci_high", "ci_items", "confidence", "resamples",
                   "synthetic", "tokens", "cost_usd"]


def summary_record(summary: MethodSummary) -> dict:
    """A summary as one CSV row (seeds and iterations as space-separated lists)."""
    return {
        "method": summary.method, "metric": summary.metric, "seeds": " ".join(map(str, summary.seeds)),
        "selected_iterations": " ".join(map(str, summary.iterations)), "test_mean": summary.test_mean,
        "test_std": summary.test_std, "validation_mean": summary.validation_mean,
        "difference_vs_vanilla": summary.difference, "ci_low": summary.ci_low, "ci_high": summary.ci_high,
        "ci_items": summary.items, "confidence": summary.confidence, "resamples": summary.resamples,
        "synthetic": summary.synthetic, "tokens": summary.tokens, "cost_usd": summary.cost_usd,
    }


def write_comparison(rows: list[ComparisonRow], out_dir: str | Path,
                     summaries: list[MethodSummary] | None = None) -> tuple[Path, Path]:
    """Write `comparison.csv` (one row per variant, seed and iteration, `selected` marking the iteration
    validation picked), `comparison_summary.csv` (the summary table) and `comparison.md` (both tables).

    `summaries` default to `summarise(rows)` (no intervals: pass `summarise(rows, selected_item_scores(...))`
    for them). Returns the Markdown and the per-iteration CSV paths."""
    summaries = summarise(rows) if summaries is None else summaries
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    picked = {(s.method, seed): iteration for s in summaries for seed, iteration in zip(s.seeds, s.iterations)}
    csv_path = out / "comparison.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=ROW_COLUMNS)
        writer.writeheader()
        for row in rows:
            record = asdict(row)
            record["selected"] = picked.get((row.method, row.seed)) == row.iteration
            writer.writerow({column: record[column] for column in ROW_COLUMNS})
    with (out / SUMMARY_CSV).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(summary_record(s) for s in summaries)
    md_path = out / "comparison.md"
    md_path.write_text(markdown_table(rows, summaries), encoding="utf-8")
    return md_path, csv_path


def write_results(results: list[RunResult], out_dir: str | Path,
                  runs_root=None) -> tuple[Path | None, Path | None, list[MethodSummary]]:
    """`write_comparison` of the runs that did not fail, with the paired intervals: the Markdown and CSV paths
    and the summaries; (None, None, []) when every run failed (nothing is written then)."""
    rows = [row for result in results for row in result.rows]
    if not rows:
        return None, None, []
    summaries = summarise(rows, selected_item_scores(rows, runs_root))
    return (*write_comparison(rows, out_dir, summaries), summaries)


def _points(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def markdown_table(rows: list[ComparisonRow], summaries: list[MethodSummary] | None = None,
                   baseline: str = BASELINE) -> str:
    """The summary table (selected iteration, mean ± std over seeds, difference to vanilla with its interval),
    then the test metric per iteration (mean over seeds), then what the columns mean."""
    summaries = summarise(rows, baseline=baseline) if summaries is None else summaries
    metric = rows[0].metric if rows else "metric"
    seeds = sorted({row.seed for row in rows})
    level = f"{round(100 * (summaries[0].confidence if summaries else CONFIDENCE))}%"
    resamples = summaries[0].resamples if summaries else RESAMPLES
    header = ["method", "seeds", "selected iteration", f"test {metric}", "std", f"validation {metric}",
              f"Δ vs {baseline}", f"{level} CI of Δ", "CI items", "synthetic samples", "LLM tokens", "cost $"]
    seed_text = f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})"
    lines = [f"Test {metric} (%) of each method at the iteration its validation {metric} selects; {seed_text}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summaries:
        if s.method == baseline:
            delta, interval = "(baseline)", "–"
        else:
            delta = _points(s.difference, signed=True)
            interval = (f"[{_points(s.ci_low, True)}, {_points(s.ci_high, True)}]"
                        if s.ci_low is not None and s.ci_high is not None else "–")
        cells = [s.method, str(len(s.seeds)), ", ".join(map(str, s.iterations)), _points(s.test_mean),
                 _points(s.test_std), _points(s.validation_mean), delta, interval,
                 str(s.items) if s.items is not None and s.method != baseline else "–",
                 f"{s.synthetic:.0f}", f"{s.tokens:,.0f}", f"{s.cost_usd:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")

    iterations = sorted({row.iteration for row in rows})
    header = ["method", *[f"it {i}" for i in iterations]]
    lines += ["", f"Test {metric} (%) per iteration" + (" (mean over seeds)" if len(seeds) > 1 else ""), "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, by_seed in runs_of(rows).items():
        cells = []
        for i in iterations:
            values = [row.value for mine in by_seed.values() for row in mine if row.iteration == i]
            cells.append(_points(mean_std(values)[0]) if values else "")
        lines.append("| " + " | ".join([method, *cells]) + " |")

    lines += [
        "",
        f"selected iteration: per seed, the iteration with the best validation {metric} (earliest on a tie); the "
        f"test set never picks it. test {metric}: mean over seeds at that iteration; std: sample standard "
        "deviation over seeds (– with one seed).",
        f"Δ vs {baseline}: method minus {baseline} in points, on the same test items (matched by id) and paired by "
        f"seed. {level} CI: paired percentile bootstrap over test items ({resamples:,} resamples, fixed seed), "
        "each item resampled with its differences at every seed (the test set is the same at every seed), so it "
        "covers the luck of the test items for these seeds, not seed-to-seed spread (that is the std column); "
        "an interval that excludes 0 is a difference the test set resolves.",
        "synthetic samples: accepted synthetic samples in the selected iteration's training set; synthetic samples, "
        "LLM tokens and cost are per run, mean over seeds. Vanilla fine-tuning never changes its training set, "
        "so it runs one iteration.",
    ]
    return "\n".join(lines) + "\n"
