"""BiLAF's default (paper) mode, written from the paper's definitions as plain loops: the test oracle.

Dense float64 distances (``scipy.spatial.distance.cdist``), Python loops and sorted
``(value, index)`` lists; nothing shared with the library. What the paper defines: IDC seeded with
the core, rings of ``max(1, ⌊n·P_in⌋)`` by density distance over the ``k`` nearest admitted members
until every member is in, then the last ``⌊n·P_rm⌋`` inserted dropped (clusters below
``min_cluster_for_denoise`` kept whole, core first); the budget split by denoised size with every
pseudo-class given 1 ≤ a ≤ n'; the iterative boundary selection with the ``⌊n'/a⌋`` removal around
each newest pick (the pick itself first) and eq. 7, the penalised score minimised over *all* other
cores; the top-up by the lowest boundary score when the denoised clusters hold fewer than B.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist


def paper_bilaf(features, cores, budget: int, density_k: int = 10, ring_fraction: float = 0.1,
                removal_ratio: float = 0.1, opponent_penalty: float = 1.1,
                min_cluster_for_denoise: int = 10) -> list[int]:
    """Pool rows in output order (cluster by cluster in ascending core order, core first)."""
    features = np.asarray(features, dtype=np.float64)
    cores = sorted(int(c) for c in cores)
    to_cores = cdist(features, features[cores])
    nearest = [min(range(len(cores)), key=lambda m: (to_cores[row][m], m)) for row in range(len(features))]
    members = [[row for row in range(len(features)) if nearest[row] == m] for m in range(len(cores))]
    denoised = [_idc(features, cluster, cores[m], density_k, ring_fraction, removal_ratio,
                     min_cluster_for_denoise) for m, cluster in enumerate(members)]
    allocation = _split([len(d) for d in denoised], budget)
    output = []
    for m, cluster in enumerate(denoised):
        output.extend(_boundaries(features, cluster, m, cores, allocation[m], opponent_penalty))
    if len(output) < budget:
        output.extend(_top_up(features, members, denoised, cores, output, budget - len(output)))
    return output


def _idc(features, cluster, core, k, ring_fraction, removal_ratio, minimum):
    rest = [row for row in cluster if row != core]
    if len(cluster) < minimum:
        return [core] + rest
    n = len(cluster)
    ring = max(1, int(n * ring_fraction))
    admitted = [core]
    while rest:
        density = []
        for row in rest:
            distances = sorted(cdist(features[[row]], features[admitted])[0])[:k]
            density.append((float(np.mean(distances)), cluster.index(row), row))
        density.sort()
        chosen = [row for _, _, row in density[:ring]]
        admitted.extend(chosen)
        rest = [row for row in rest if row not in chosen]
    return admitted[: n - int(n * removal_ratio)]


def _split(sizes, budget):
    """Proportional floors clipped to [1, size], then one unit at a time: taken from the largest
    allocation (ties: smaller share, then higher index) or given to the smallest (ties: larger
    share, then lower index) until the total is min(budget, Σ sizes)."""
    total = sum(sizes)
    share = [s / total for s in sizes]
    allocation = [min(max(int(np.floor(p * budget)), 1), s) for p, s in zip(share, sizes)]
    target = min(budget, total)
    while sum(allocation) > target:
        m = max((m for m in range(len(sizes)) if allocation[m] > 1),
                key=lambda m: (allocation[m], -share[m], m))
        allocation[m] -= 1
    while sum(allocation) < target:
        m = min((m for m in range(len(sizes)) if allocation[m] < sizes[m]),
                key=lambda m: (allocation[m], -share[m], m))
        allocation[m] += 1
    return allocation


def _boundaries(features, cluster, m, cores, allocation, penalty_factor):
    n = len(cluster)
    local = cdist(features[cluster], features[cluster])
    intra = [float(np.mean(local[j])) for j in range(n)]
    others = [other for other in range(len(cores)) if other != m]
    to_others = cdist(features[cluster], features[[cores[other] for other in others]]) if others else None
    opponent = [others[min(range(len(others)), key=lambda t: (to_others[j][t], t))] if others else None
                for j in range(n)]
    penalty = {other: 1.0 for other in others}
    removal = n // allocation
    alive = list(range(n))
    picks = [0]  # the core is first in the denoised list
    while len(picks) < allocation:
        node = picks[-1]
        alive.sort(key=lambda j: (j != node, local[node][j], j))  # the pick itself leaves first
        alive = alive[removal:]
        if node != 0 and others:
            penalty[opponent[node]] *= penalty_factor
        scores = []
        for position, j in enumerate(alive):
            if not others:
                score = 1.0
            else:
                score = min((to_others[j][t] * penalty[other] - intra[j]) / max(to_others[j][t], intra[j])
                            for t, other in enumerate(others))
            scores.append((score, position, j))
        picks.append(min(scores)[2])
    return [cluster[j] for j in picks]


def _top_up(features, members, denoised, cores, taken, count):
    scored = []
    for m, cluster in enumerate(members):
        others = [cores[other] for other in range(len(cores)) if other != m]
        for row in cluster:
            if row in taken:
                continue
            intra = float(np.mean(cdist(features[[row]], features[denoised[m]])[0]))
            if not others:
                scored.append((1.0, row))
                continue
            inter = float(cdist(features[[row]], features[others])[0].min())
            scored.append(((inter - intra) / max(inter, intra), row))
    scored.sort()
    return [row for _, row in scored[:count]]
