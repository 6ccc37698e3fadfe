"""How many synthetic samples each generation branch may produce in one iteration.

The paper fixes the synthetic budget per iteration at 50 % of the training-set
size, spreads the pattern-guided part evenly across the error clusters and adds
an error-based share. It does not say how large that share is, so it is a
setting here (`error_fraction`). The total is fixed first and the branches
divide it, so every method (PaDA, its ablations, the AugGPT and
LLMs-as-Instructors baselines) can be run with the SAME number of synthetic
samples, which is what makes the comparison fair.

`plan_budget` is pure arithmetic: no LLM calls, no randomness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class BudgetConfig:
    """Settings for `plan_budget`.

    Branch switches express the paper's ablations and baselines:
    - PaDA-Agent: defaults (patterns + errors).
    - "without generalization patterns" / LLMs-as-Instructors: `use_patterns=False`
      (the whole budget goes to the error branch).
    - "without training errors": `use_errors=False` (the whole budget goes to patterns).
    - AugGPT: `use_rephrase=True` (the whole budget goes to rephrasing).
    """

    # Paper: synthetic samples per iteration = 50 % of the training-set size.
    synthetic_ratio: float = field(default=0.5, metadata={"help": "synthetic samples per iteration / training-set size (paper: 0.5)"})
    # Our choice (the paper gives no number): the error branch may take at most
    # 30 % of the total, so the pattern-guided branch, the method's main idea, keeps the larger part.
    error_fraction: float = field(default=0.3, metadata={"help": "largest share of the total the error branch may take when patterns are also used"})
    # LLM2LLM / LLMs-as-Instructors write a few new questions per failure; 2 keeps them close to the failure.
    variants_per_failure: int = field(default=2, metadata={"help": "synthetic samples per training failure (caps the error share)"})
    use_patterns: bool = field(default=True, metadata={"help": "pattern-guided branch on (ablation: off)"})
    use_errors: bool = field(default=True, metadata={"help": "error-based branch on (ablation: off)"})
    use_rephrase: bool = field(default=False, metadata={"help": "AugGPT baseline: the whole budget goes to rephrasing training samples"})

    def __post_init__(self) -> None:
        if self.synthetic_ratio < 0:
            raise ValueError(f"synthetic_ratio must be >= 0, got {self.synthetic_ratio}")
        if not 0.0 <= self.error_fraction <= 1.0:
            raise ValueError(f"error_fraction must be within [0, 1], got {self.error_fraction}")
        if self.variants_per_failure < 1:
            raise ValueError(f"variants_per_failure must be >= 1, got {self.variants_per_failure}")


@dataclass
class Budget:
    """The planned number of synthetic samples per branch.

    `per_cluster[i]` belongs to the i-th strategy passed to generation.
    `unallocated` is what no branch could take (e.g. no clusters and no
    training failures); the loop should report it rather than hide it.
    """

    total: int
    per_cluster: list[int]
    error: int
    rephrase: int = 0
    unallocated: int = 0
    variants_per_failure: int = 2  # how the error share is spread over failures (see `error_quotas`)

    @property
    def pattern(self) -> int:
        return sum(self.per_cluster)

    def as_dict(self) -> dict:
        return {"total": self.total, "pattern": self.pattern, "per_cluster": list(self.per_cluster),
                "error": self.error, "rephrase": self.rephrase, "unallocated": self.unallocated,
                "variants_per_failure": self.variants_per_failure}


def round_half_up(x: float) -> int:
    """Round .5 up (Python's round() rounds 150.5 to 150, which surprises people reading budgets)."""
    return math.floor(x + 0.5)


def split_evenly(total: int, n: int) -> list[int]:
    """`total` items over `n` bins as evenly as possible; the remainder goes to the first bins."""
    if n <= 0:
        return []
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def plan_budget(train_size: int, n_clusters: int, n_train_failures: int,
                config: BudgetConfig | None = None) -> Budget:
    """Divide round(synthetic_ratio x train_size) samples between the branches.

    - error share = min(n_train_failures x variants_per_failure, error_fraction x total)
      when both branches run; the whole total when patterns are off or there are no clusters;
    - the rest split evenly across clusters (remainder to the first clusters);
      all of it when errors are off or there are no training failures.
    """
    config = config or BudgetConfig()
    total = round_half_up(config.synthetic_ratio * train_size)
    if config.use_rephrase:
        return Budget(total=total, per_cluster=[0] * n_clusters, error=0, rephrase=total,
                      variants_per_failure=config.variants_per_failure)

    patterns_on = config.use_patterns and n_clusters > 0
    errors_on = config.use_errors and n_train_failures > 0
    if patterns_on and errors_on:
        error = min(n_train_failures * config.variants_per_failure,
                    round_half_up(config.error_fraction * total))
    elif errors_on:
        error = total  # no patterns: the error branch takes everything (more variants per failure)
    else:
        error = 0
    pattern_total = total - error if patterns_on else 0
    per_cluster = split_evenly(pattern_total, n_clusters) if patterns_on else [0] * n_clusters
    return Budget(total=total, per_cluster=per_cluster, error=error,
                  unallocated=total - error - pattern_total, variants_per_failure=config.variants_per_failure)


def error_quotas(error_budget: int, n_failures: int, variants_per_failure: int) -> list[int]:
    """Samples to write per failure (in the order the failures were drawn).

    Within the cap, use as few failures as needed at `variants_per_failure`
    each (the last may get fewer); above the cap (patterns off), spread the
    budget over all failures evenly.
    """
    if error_budget <= 0 or n_failures <= 0:
        return []
    if error_budget <= n_failures * variants_per_failure:
        n_used = math.ceil(error_budget / variants_per_failure)
        quotas = [variants_per_failure] * n_used
        quotas[-1] = error_budget - variants_per_failure * (n_used - 1)
        return quotas
    return split_evenly(error_budget, n_failures)
