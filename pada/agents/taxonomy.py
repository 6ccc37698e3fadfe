"""One pattern taxonomy across iterations: each iteration's patterns matched to the ones seen before.

Every iteration clusters its own failures and names its own patterns, so iteration 2's "Unit errors" and
iteration 1's "Unit conversion slips" are two unrelated records. A *taxon* is one error pattern followed
across iterations: it has a stable id and a display name (the name of the pattern that first showed it),
and each iteration's pattern keeps its own name.

Matching: the patterns of iteration i against every taxon known before i, each represented by its latest
pattern. Similarity is the cosine of the embedded pattern texts (`category_name: error_pattern`, with the
embedder the clustering used), averaged with the cosine of the two clusters' centroids (mean analysis
embedding) where both are stored. A pattern that comes back under the same name (case and spacing aside)
always matches its taxon: the naming LLM saw both clusters and called them the same, whatever their
descriptions' cosine (a quickstart's "Contextual Understanding" scored 0.51 against its own earlier self).
The assignment is one-to-one and maximises the total similarity, same names first
(`scipy.optimize.linear_sum_assignment`); any other pair below the threshold stays unmatched and its
pattern becomes a new taxon. A taxon no pattern of iteration i matched has no failures there (the dashboard shows 0); being
kept as a candidate, it can be matched again when its pattern comes back.

Cost: no LLM calls; one embedding pass over a few dozen pattern texts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from pada.records import Pattern
from pada.store.stored import Taxon

if TYPE_CHECKING:
    import numpy as np

Embed = Callable[[list[str]], "np.ndarray"]  # texts -> unit-length rows (pada.agents.clustering.embed_texts)


def pattern_text(pattern: Pattern) -> str:
    """What is embedded to compare two patterns: the name and the description the LLM gave."""
    return f"{pattern.category_name}: {pattern.error_pattern}"


def centroids(vectors: Iterable[tuple[int, str, int, np.ndarray]]) -> dict[tuple[int, int], np.ndarray]:
    """Unit-length mean embedding per (iteration, cluster id), from `RunStore.cluster_vectors` rows."""
    import numpy as np

    groups: dict[tuple[int, int], list[np.ndarray]] = {}
    for iteration, _failure_id, cluster_id, vector in vectors:
        groups.setdefault((iteration, cluster_id), []).append(vector)
    found = {}
    for key, members in groups.items():
        mean = np.mean(members, axis=0)
        norm = float(np.linalg.norm(mean))
        if norm > 0:
            found[key] = mean / norm
    return found


def similarity_matrix(new_texts: np.ndarray, old_texts: np.ndarray,
                      new_centroids: list[np.ndarray | None] | None = None,
                      old_centroids: list[np.ndarray | None] | None = None) -> np.ndarray:
    """Similarity of every new pattern (rows) to every known taxon (columns): the text cosine, averaged
    with the centroid cosine for the pairs where both centroids are there (and of the same size)."""
    import numpy as np

    similarity = np.asarray(new_texts, dtype=float) @ np.asarray(old_texts, dtype=float).T
    for r, new in enumerate(new_centroids or []):
        for c, old in enumerate(old_centroids or []):
            if new is not None and old is not None and new.shape == old.shape:
                similarity[r, c] = (similarity[r, c] + float(new @ old)) / 2
    return similarity


def same_name(new_names: list[str], old_names: list[str]) -> np.ndarray:
    """Boolean matrix: the new pattern (row) has the known taxon's (column) latest name, case and spacing aside."""
    import numpy as np

    def key(name: str) -> str:
        return " ".join(name.casefold().split())
    return np.array([[key(new) == key(old) for old in old_names] for new in new_names], dtype=bool).reshape(
        len(new_names), len(old_names))


def one_to_one(similarity: np.ndarray, threshold: float, named_alike: np.ndarray | None = None) -> dict[int, int]:
    """Row -> column pairs of the assignment with the largest total similarity, each row and column used at
    most once; pairs below `threshold` are dropped (their rows stay unmatched) unless `named_alike` marks them
    (those pairs also go first: a same-name pair outweighs any similarity, which is at most 1)."""
    if similarity.size == 0:
        return {}
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    alike = named_alike if named_alike is not None else np.zeros(similarity.shape, dtype=bool)
    rows, columns = linear_sum_assignment(similarity + 2.0 * alike, maximize=True)
    return {int(r): int(c) for r, c in zip(rows, columns) if similarity[r, c] >= threshold or alike[r, c]}


def latest_taxa(earlier: Iterable[Taxon]) -> list[Taxon]:
    """Each taxon's latest appearance, by taxon id: the pattern a new one is compared with."""
    latest: dict[int, Taxon] = {}
    for taxon in sorted(earlier, key=lambda t: t.iteration):
        latest[taxon.taxon_id] = taxon
    return [latest[taxon_id] for taxon_id in sorted(latest)]


def assign_taxa(iteration: int, patterns: list[Pattern], earlier: list[Taxon],
                earlier_patterns: Mapping[tuple[int, int], Pattern], embed: Embed,
                centroid_of: Mapping[tuple[int, int], np.ndarray] | None = None,
                threshold: float = 0.6) -> list[Taxon]:
    """The taxa of `iteration`'s patterns, in cluster-id order.

    `earlier`: the stored taxa of the iterations before (iteration 1: none, so every pattern is a new taxon);
    `earlier_patterns`: their patterns by (iteration, cluster id); `centroid_of`: cluster centroids by
    (iteration, cluster id), where stored (see `centroids`). New taxa are numbered after every earlier id.
    """
    patterns = sorted(patterns, key=lambda p: p.cluster_id)
    known = [t for t in latest_taxa(t for t in earlier if t.iteration < iteration)
             if (t.iteration, t.cluster_id) in earlier_patterns]
    matched: dict[int, int] = {}
    if patterns and known:
        centroid_of = centroid_of or {}
        texts = embed([pattern_text(p) for p in patterns] +
                      [pattern_text(earlier_patterns[(t.iteration, t.cluster_id)]) for t in known])
        similarity = similarity_matrix(
            texts[:len(patterns)], texts[len(patterns):],
            [centroid_of.get((iteration, p.cluster_id)) for p in patterns],
            [centroid_of.get((t.iteration, t.cluster_id)) for t in known])
        alike = same_name([p.category_name for p in patterns],
                          [earlier_patterns[(t.iteration, t.cluster_id)].category_name for t in known])
        matched = one_to_one(similarity, threshold, alike)
    next_id = max((t.taxon_id for t in earlier), default=-1) + 1
    taxa = []
    for row, pattern in enumerate(patterns):
        if row in matched:
            taxon = known[matched[row]]
            taxa.append(Taxon(iteration, pattern.cluster_id, taxon.taxon_id,
                              round(float(similarity[row, matched[row]]), 4), taxon.display_name))
        else:
            taxa.append(Taxon(iteration, pattern.cluster_id, next_id, None, pattern.category_name))
            next_id += 1
    return taxa
