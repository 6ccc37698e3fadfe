"""Slices of a run's analysed failures: one 2-D map across iterations, and what a person takes away as JSONL.

The map is one fit over the stored analysis embeddings (`RunStore.cluster_vectors`) of every chosen
iteration, made with the clustering stage's own projection (`project_2d` under the run's
`ClusteringConfig`), so a pattern that empties out from one iteration to the next shows as its region
thinning. Runs made before the embeddings were stored have none: the map is then empty and the page
keeps the per-iteration maps. A slice (a lasso or box selection, a cluster, a pattern) is a list of
(iteration, failure id) keys; `slice_records` turns it into one self-contained record per failure.
Nothing here imports Streamlit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pandas as pd

from pada.agents.clustering import ClusteringConfig, project_2d
from pada.config import from_dict
from pada.dashboard.frames import cluster_frame
from pada.store import RunStore

Key = tuple[int, str]  # (iteration, failure id): failure ids repeat across iterations (same validation item)

MAP_COLUMNS = ["iteration", "failure_id", "cluster", "pattern", "taxon_id", "taxon", "x", "y", "error_cause",
               "scenario"]


# ------------------------------------------------------------------- map


def run_clustering_config(store: RunStore) -> ClusteringConfig:
    """The clustering settings the run was made with (projection kind, UMAP parameters, seed)."""
    return from_dict(store.config(), source=f"run {store.run_id} config").clustering


def cross_iteration_map(store: RunStore, iterations: list[int], config: ClusteringConfig | None = None
                        ) -> pd.DataFrame:
    """One row per clustered failure of `iterations` that has its embedding stored, placed by ONE 2-D fit
    over all of them (MAP_COLUMNS; `pattern` is the iteration's own name, `taxon` the name followed across
    iterations or NA). Deterministic: the projection is seeded by the run's clustering seed. Empty when no
    chosen iteration has embeddings (a run made before they were stored). ValueError when the iterations
    were embedded by different embedders: their vectors are not comparable."""
    import numpy as np

    vectors = store.cluster_vectors(sorted(set(iterations)))
    if not vectors:
        return pd.DataFrame(columns=MAP_COLUMNS)
    present = sorted({it for it, *_ in vectors})
    embedders = {it: clustering.embedder for it in present if (clustering := store.clustering(it)) is not None}
    if len(set(embedders.values())) > 1:
        used = ", ".join(f"iteration {it}: {name or 'unknown'}" for it, name in embedders.items())
        raise ValueError(f"the iterations were embedded by different models ({used}); one map needs one embedder")
    coords = project_2d(np.stack([vector for *_, vector in vectors]), config or run_clustering_config(store))
    points = pd.DataFrame({
        "iteration": [it for it, *_ in vectors], "failure_id": [f for _, f, *_ in vectors],
        "cluster": [c for _, _, c, _ in vectors], "x": coords[:, 0].astype(float), "y": coords[:, 1].astype(float),
    })
    details = pd.concat([cluster_frame(store, it).assign(iteration=it) for it in present], ignore_index=True)
    details = details[["iteration", "failure_id", "category", "error_cause", "scenario"]].rename(
        columns={"category": "pattern"})
    taxa = pd.DataFrame([(t.iteration, t.cluster_id, t.taxon_id, t.display_name) for t in store.taxa(present)],
                        columns=["iteration", "cluster", "taxon_id", "taxon"])
    frame = points.merge(details, on=["iteration", "failure_id"], how="left").merge(
        taxa, on=["iteration", "cluster"], how="left")
    frame["taxon_id"] = frame["taxon_id"].astype("Int64")
    frame["pattern"] = frame["pattern"].fillna(frame["cluster"].map(lambda c: f"Cluster {c}"))
    frame[["error_cause", "scenario"]] = frame[["error_cause", "scenario"]].fillna("")
    return frame[MAP_COLUMNS]


def pattern_groups(frame: pd.DataFrame) -> pd.Series:
    """The pattern each row belongs to across iterations: its taxon's name, else its iteration's pattern name."""
    return frame["taxon"].fillna(frame["pattern"])


# ---------------------------------------------------------------- slices


def keys_of(frame: pd.DataFrame) -> list[Key]:
    """The (iteration, failure id) keys of a map frame's rows, in row order."""
    return [(int(it), str(f)) for it, f in zip(frame["iteration"], frame["failure_id"], strict=True)]


def selection_keys(points: Iterable[dict[str, Any]]) -> list[Key]:
    """The keys of the points a plotly selection event reports (`customdata` starts with iteration, failure
    id), each once, in selection order."""
    keys = [(int(p["customdata"][0]), str(p["customdata"][1])) for p in points if p.get("customdata")]
    return list(dict.fromkeys(keys))


def slice_records(store: RunStore, keys: Iterable[Key]) -> list[dict[str, Any]]:
    """One record per distinct key, in key order: the failure (input, ground truth, prediction), its error
    analysis, cluster, pattern (name, description, taxon) and where it comes from (iteration, failure id).
    A key the store has no validation failure for is a ValueError: a slice never loses a row silently."""
    keys = list(dict.fromkeys((int(it), str(f)) for it, f in keys))
    by_iteration = {it: _iteration_records(store, it) for it in sorted({it for it, _ in keys})}
    missing = [key for key in keys if key[1] not in by_iteration[key[0]]]
    if missing:
        raise ValueError(f"no stored validation failure for {', '.join(f'{f} (iteration {it})' for it, f in missing)}")
    return [by_iteration[it][f] for it, f in keys]


def _iteration_records(store: RunStore, iteration: int) -> dict[str, dict[str, Any]]:
    patterns = {p.cluster_id: p for p in store.patterns(iteration)}
    taxa = {t.cluster_id: t for t in store.taxa([iteration])}
    records = {}
    for row in store.failure_rows(iteration, limit=None):
        failure, analysis = row.failure, row.analysis
        pattern, taxon = patterns.get(row.cluster_id), taxa.get(row.cluster_id)
        records[failure.id] = {
            "iteration": iteration, "failure_id": failure.id, "input": failure.input,
            "ground_truth": failure.ground_truth, "prediction": failure.prediction, "extracted": failure.extracted,
            "analysis": analysis.model_dump(exclude={"failure_id", "sample_idx"}) if analysis else None,
            "cluster_id": row.cluster_id,
            "pattern": None if pattern is None else {
                "name": pattern.category_name, "description": pattern.error_pattern,
                "taxon_id": taxon.taxon_id if taxon else None, "taxon": taxon.display_name if taxon else None,
            },
        }
    return records


def to_jsonl(records: Iterable[dict[str, Any]]) -> str:
    """One JSON object per line (UTF-8 text, not ASCII-escaped), newline-terminated."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def slice_file_name(run_id: str, iterations: Iterable[int], what: str) -> str:
    """`<run>-it1-2-<what>.jsonl`: the run and iterations a downloaded slice came from."""
    its = "-".join(str(it) for it in sorted(set(iterations)))
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in what).strip("-") or "slice"
    return f"{run_id}-it{its}-{safe}.jsonl"
