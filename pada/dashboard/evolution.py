"""What the Evolution page shows: validation failures per pattern across iterations, and per validation item
what changed between two iterations. Built from `RunStore` reads only (no SQL, no Streamlit).

Patterns are followed across iterations by their taxon (pada/agents/taxonomy.py): a taxon keeps one label
(and colour) in every bar. Runs stored before taxa existed (schema v3), or an iteration without them, fall
back to the iteration's own pattern names (`has_taxa` says which case a run is).

Counts are estimates: only a random subsample of each iteration's validation failures is analysed and
clustered, so a pattern's count among all F failures is scaled from its share of the A analysed ones
(c_k / A * F, rounded by largest remainder so the parts add up to F exactly). An iteration with failures
but no analysis is one "Not analysed" part of F, never spread over patterns.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pada.dashboard.frames import failures_frame
from pada.store import RunStore

NOT_ANALYSED = "Not analysed"
STATUSES = ("fixed", "still failing", "newly failing", "always right")
TAXONOMY_COLUMNS = ["iteration", "cluster_id", "taxon_id", "label", "name", "similarity"]
ESTIMATE_COLUMNS = ["iteration", "label", "taxon_id", "cluster_id", "name", "similarity", "members", "estimate",
                    "analysed", "failures"]
ITEM_COLUMNS = ["example_id", "status", "earlier_correct", "later_correct", "earlier_pattern", "later_pattern",
                "input", "ground_truth", "earlier_prediction", "later_prediction"]
PATTERN_COLUMNS = ["pattern", "earlier_name", "later_name", "failures", "fixed", "still_failing", "new_failures",
                   "failure_ids", "fixed_ids", "still_failing_ids", "new_failure_ids"]


# ----------------------------------------------------------------- taxonomy


def taxonomy_table(store: RunStore) -> pd.DataFrame:
    """One row per stored pattern: its iteration, cluster, taxon (NA without taxa), label and own name.

    The label is what the chart's legend and colours go by: the taxon's display name (with its id where two
    taxa share a name), or, without taxa, the iteration's own pattern name."""
    taxa = {(t.iteration, t.cluster_id): t for t in store.taxa()}
    rows = []
    for iteration in sorted({*store.iterations(), *evaluated_iterations(store)}):
        for pattern in store.patterns(iteration):
            taxon = taxa.get((iteration, pattern.cluster_id))
            rows.append({"iteration": iteration, "cluster_id": pattern.cluster_id,
                         "taxon_id": taxon.taxon_id if taxon else None,
                         "display": taxon.display_name if taxon else pattern.category_name,
                         "name": pattern.category_name, "similarity": taxon.similarity if taxon else None})
    frame = pd.DataFrame(rows, columns=["iteration", "cluster_id", "taxon_id", "display", "name", "similarity"])
    frame["taxon_id"] = frame["taxon_id"].astype("Int64")
    frame["label"] = _labels(frame)
    return frame[TAXONOMY_COLUMNS]


def _labels(frame: pd.DataFrame) -> list[str]:
    """Display names made unique per taxon: a name two taxa share gets the taxon id, `Units (#4)`."""
    taxa = frame.dropna(subset=["taxon_id"]).drop_duplicates("taxon_id")
    shared = set(taxa["display"][taxa["display"].duplicated(keep=False)])
    return [f"{display} (#{taxon_id})" if display in shared and not pd.isna(taxon_id) else display
            for display, taxon_id in zip(frame["display"], frame["taxon_id"])]


def has_taxa(taxonomy: pd.DataFrame) -> str:
    """'all': every iteration's patterns are in the taxonomy; 'some' or 'none' (a run made before taxa)."""
    if taxonomy.empty or taxonomy["taxon_id"].isna().all():
        return "none"
    return "all" if taxonomy["taxon_id"].notna().all() else "some"


# -------------------------------------------------------------- estimates


def largest_remainder(weights: list[int], total: int) -> list[int]:
    """Integers proportional to `weights` that add up to `total` (Hamilton's method; exact integer arithmetic,
    ties to the earlier weight). All-zero weights give zeros."""
    whole = sum(weights)
    if whole <= 0:
        return [0] * len(weights)
    parts = [w * total // whole for w in weights]
    remainders = [w * total % whole for w in weights]
    for index in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:total - sum(parts)]:
        parts[index] += 1
    return parts


def evaluated_iterations(store: RunStore) -> list[int]:
    """Iterations with validation predictions (a bar each, also when it has no failures)."""
    return sorted({row.iteration for row in store.accuracy_by_iteration() if row.split == "validation"})


def error_estimates(store: RunStore) -> pd.DataFrame:
    """Estimated validation failures per pattern (label) and iteration: one row per part of each bar.

    Columns: `members` (c_k, analysed failures in the cluster), `estimate` (its share of all failures),
    `analysed` (A) and `failures` (F) of the iteration. In an iteration with analysed failures every label of
    the run has a row: a taxon absent there has 0.
    """
    taxonomy = taxonomy_table(store)
    labels = list(dict.fromkeys(taxonomy["label"]))
    rows: list[dict[str, Any]] = []
    for iteration in evaluated_iterations(store):
        failures = store.failure_count(iteration)
        sizes = store.cluster_sizes(iteration)
        analysed = sum(sizes.values())
        base = {"iteration": iteration, "analysed": analysed, "failures": failures}
        if not analysed:
            rows.append({**base, "label": NOT_ANALYSED, "taxon_id": None, "cluster_id": None, "name": "",
                         "similarity": None, "members": 0, "estimate": failures})
            continue
        own = taxonomy[taxonomy["iteration"] == iteration].set_index("cluster_id")
        clusters = sorted(sizes)
        for cluster_id, estimate in zip(clusters, largest_remainder([sizes[c] for c in clusters], failures)):
            found = own.loc[cluster_id] if cluster_id in own.index else None
            label = found["label"] if found is not None else f"Cluster {cluster_id}"
            rows.append({**base, "label": label, "cluster_id": cluster_id, "members": sizes[cluster_id],
                         "estimate": estimate, "name": found["name"] if found is not None else label,
                         "taxon_id": found["taxon_id"] if found is not None else None,
                         "similarity": found["similarity"] if found is not None else None})
        present = {row["label"] for row in rows if row["iteration"] == iteration}
        rows += [{**base, "label": label, "taxon_id": _taxon_of(taxonomy, label), "cluster_id": None, "name": "",
                  "similarity": None, "members": 0, "estimate": 0} for label in labels if label not in present]
    frame = pd.DataFrame(rows, columns=ESTIMATE_COLUMNS)
    for column in ("taxon_id", "cluster_id"):
        frame[column] = frame[column].astype("Int64")
    return frame


def _taxon_of(taxonomy: pd.DataFrame, label: str) -> Any:
    ids = taxonomy.loc[taxonomy["label"] == label, "taxon_id"]
    return ids.iloc[0] if len(ids) else None


def selected_segment(points: list[dict[str, Any]], estimates: pd.DataFrame) -> tuple[int, int | None] | None:
    """(iteration, cluster id; None for the "Not analysed" part) of the first clicked bar segment, from a
    plotly selection (`customdata` [iteration, cluster id or -1], else its x and legend group); None when
    nothing (or a zero part) is selected."""
    for point in points or []:
        custom = point.get("customdata")
        if custom is not None and len(custom) >= 2:
            iteration, cluster_id = int(custom[0]), int(custom[1])
            return iteration, (None if cluster_id < 0 else cluster_id)
        if "x" in point and "legendgroup" in point:
            row = estimates[(estimates["iteration"] == int(point["x"])) & (estimates["label"] == point["legendgroup"])
                            & (estimates["estimate"] > 0)]
            if len(row):
                cluster_id = row["cluster_id"].iloc[0]
                return int(point["x"]), None if pd.isna(cluster_id) else int(cluster_id)
    return None


def segment_failures(store: RunStore, iteration: int, cluster_id: int | None) -> pd.DataFrame:
    """The analysed failures behind one bar segment (a cluster of `iteration`), or with `cluster_id=None` the
    failures that were not analysed and clustered (the "Not analysed" part)."""
    frame = failures_frame(store, iteration)
    chosen = frame["cluster"].isna() if cluster_id is None else (frame["cluster"] == cluster_id).fillna(False)
    return frame[chosen].reset_index(drop=True)


# ------------------------------------------------------------ transitions


def transitions(store: RunStore, earlier: int, later: int) -> pd.DataFrame:
    """One row per validation item evaluated in both iterations: fixed / still failing / newly failing /
    always right, the pattern (label) of its failure in each iteration where it failed (`Not analysed` for a
    failure outside the analysed subsample), and the texts to show it by (inputs are stored for failures
    only, so an item right in both iterations has its id and predictions)."""
    before = {p.id: p for p in store.predictions(earlier, "validation")}
    after = {p.id: p for p in store.predictions(later, "validation")}
    taxonomy = taxonomy_table(store)
    pattern_of = {it: _failure_labels(store, taxonomy, it) for it in (earlier, later)}
    texts = {f.id: f for it in (later, earlier) for f in store.failures(it, "validation")}
    rows = []
    for example_id, old in before.items():
        new = after.get(example_id)
        if new is None:
            continue
        failure = texts.get(example_id)
        rows.append({
            "example_id": example_id, "status": _status(old.correct, new.correct),
            "earlier_correct": old.correct, "later_correct": new.correct,
            "earlier_pattern": None if old.correct else pattern_of[earlier].get(example_id, NOT_ANALYSED),
            "later_pattern": None if new.correct else pattern_of[later].get(example_id, NOT_ANALYSED),
            "input": failure.input if failure else "", "ground_truth": failure.ground_truth if failure else "",
            "earlier_prediction": old.prediction, "later_prediction": new.prediction,
        })
    return pd.DataFrame(rows, columns=ITEM_COLUMNS)


def _status(earlier_correct: bool, later_correct: bool) -> str:
    if earlier_correct:
        return "always right" if later_correct else "newly failing"
    return "fixed" if later_correct else "still failing"


def _failure_labels(store: RunStore, taxonomy: pd.DataFrame, iteration: int) -> dict[str, str]:
    """Failure id -> the label of its cluster's pattern, for the clustered failures of `iteration`."""
    own = dict(zip(taxonomy.loc[taxonomy["iteration"] == iteration, "cluster_id"],
                   taxonomy.loc[taxonomy["iteration"] == iteration, "label"]))
    return {p.failure_id: own.get(p.cluster_id, f"Cluster {p.cluster_id}") for p in store.cluster_points(iteration)}


def transition_counts(items: pd.DataFrame) -> pd.DataFrame:
    """How many items have each status (all four, zeros included), with their ids."""
    rows = [{"status": status, "count": int((items["status"] == status).sum()),
             "ids": items.loc[items["status"] == status, "example_id"].tolist()} for status in STATUSES]
    return pd.DataFrame(rows, columns=["status", "count", "ids"])


def pattern_transitions(items: pd.DataFrame, taxonomy: pd.DataFrame, earlier: int, later: int) -> pd.DataFrame:
    """Per pattern (label): the earlier iteration's analysed failures in it, how many of them are fixed and
    still failing in the later one, and the later iteration's new failures in the same pattern (a matched
    taxon; without taxa, the same name), each with its item ids. Patterns of either iteration are rows, so
    every fixed and every newly failing item is counted once; `Not analysed` collects the rest."""
    names = {it: dict(zip(taxonomy.loc[taxonomy["iteration"] == it, "label"],
                          taxonomy.loc[taxonomy["iteration"] == it, "name"])) for it in (earlier, later)}
    failed = items[~items["earlier_correct"]]
    new = items[items["status"] == "newly failing"]
    labels = list(dict.fromkeys([*names[earlier], *failed["earlier_pattern"], *names[later], *new["later_pattern"]]))
    rows = []
    for label in labels:
        mine = failed[failed["earlier_pattern"] == label]
        ids = {"failure_ids": mine["example_id"].tolist(),
               "fixed_ids": mine.loc[mine["later_correct"], "example_id"].tolist(),
               "still_failing_ids": mine.loc[~mine["later_correct"], "example_id"].tolist(),
               "new_failure_ids": new.loc[new["later_pattern"] == label, "example_id"].tolist()}
        if label == NOT_ANALYSED and not any(ids.values()):
            continue
        rows.append({"pattern": label, "earlier_name": names[earlier].get(label, ""),
                     "later_name": names[later].get(label, ""), "failures": len(ids["failure_ids"]),
                     "fixed": len(ids["fixed_ids"]), "still_failing": len(ids["still_failing_ids"]),
                     "new_failures": len(ids["new_failure_ids"]), **ids})
    frame = pd.DataFrame(rows, columns=PATTERN_COLUMNS)
    return frame.sort_values(["failures", "new_failures"], ascending=False, kind="stable").reset_index(drop=True)
