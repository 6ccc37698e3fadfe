"""The names of the loop's stages, shared by the pipeline that runs them and the store that records them.

The store needs two of them to refuse edits that can no longer take effect: a strategy is consumed
by its iteration's `generate` stage, a review decision by the next iteration's `train_set` stage.
"""

TRAIN_SET, FINETUNE, EVALUATE = "train_set", "finetune", "evaluate"
ANALYSE, CLUSTER, PATTERNS, STRATEGIES = "analyse", "cluster", "patterns", "strategies"
REVIEW_STRATEGIES, GENERATE, REVIEW_QC = "review_strategies", "generate", "review_qc"
