"""A straightforward BiLAF boundary stage (docs/methods.md §3.1–3.6, the reference behaviours of §3.4).

The test oracle and the speed baseline: written from the specification, in the shape of the
official code — a dense N×K distance matrix for the assignment, a dense n×n matrix per cluster,
per-candidate Python loops in the denoising and in the boundary selection, lists of
``(value, index)`` tuples sorted to break ties. It reproduces the reference's quirks: the
density-distance indexing bug and ring 1 including the core (§3.4), leftovers dropped, the
nearest-opponent-only penalty (§3.6), the budget rounding (§3.5), cores in ascending order.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist


def dense_bilaf(features, cores, budget: int, density_k: int = 10, ring_fraction: float = 0.1,
                removal_ratio: float = 0.1, opponent_penalty: float = 1.1,
                min_cluster_for_denoise: int = 10) -> list[int]:
    """Pool rows in output order (cluster by cluster, core first) for the given ``cores``."""
    features = np.asarray(features, dtype=np.float64)
    cores = sorted(int(c) for c in cores)
    core_features = features[cores]

    # §3.1 step 2: nearest core by Euclidean distance, ties → lowest core index.
    nearest = np.argmin(cdist(features, core_features), axis=1)
    clusters = [[] for _ in cores]
    for row, m in enumerate(nearest):
        clusters[m].append(row)

    # §3.4: IDC denoising as the reference code does it.
    for m, members in enumerate(clusters):
        n = len(members)
        if n < min_cluster_for_denoise:
            continue
        local = cdist(features[members], features[members])
        core_local = members.index(cores[m])
        ring = max(1, int(n * ring_fraction))
        by_core = sorted((local[core_local][j], j) for j in range(n))
        admitted = [j for _, j in by_core[:ring]]
        inside = set(admitted)
        for _ in range(2, n // ring + 1):
            scored = []
            for j in range(n):
                if j in inside:
                    continue
                to_admitted = [local[j][p] for p in admitted]
                positions = np.argsort(to_admitted)[:density_k]
                # the reference's bug: list positions read as local indices of j's own row
                scored.append((np.mean(local[j][positions]), j))
            scored.sort()
            for _, j in scored[:ring]:
                admitted.append(j)
                inside.add(j)
        admitted = admitted[:int(len(admitted) * (1 - removal_ratio))]
        clusters[m] = [members[j] for j in admitted]

    # §3.5: floors, then one unit at a time to the smallest allocation (ties: larger share, lower m).
    sizes = np.array([len(c) for c in clusters])
    shares = 1.0 * sizes / sizes.sum()
    allocation = [int(a) for a in np.floor(shares * budget)]
    for _ in range(budget - sum(allocation)):
        best = 0
        for m in range(len(allocation)):
            if allocation[m] < allocation[best] or (allocation[m] == allocation[best] and shares[m] > shares[best]):
                best = m
        allocation[best] += 1

    # §3.6: iterative boundary selection inside each cluster.
    output = []
    for m, members in enumerate(clusters):
        n = len(members)
        local = cdist(features[members], features[members])
        intra = [np.mean(row) for row in local]
        to_cores = cdist(features[members], core_features)
        inter, opponent = [], []
        for j in range(n):
            to_cores[j][m] = 1e9 + 7
            inter.append(np.min(to_cores[j]))
            opponent.append(int(np.argmin(to_cores[j])))
        penalty = [1.0] * len(cores)
        core_local = members.index(cores[m])
        removal = int(n / allocation[m])
        picks = [core_local]
        candidates = list(range(n))
        while len(picks) < allocation[m]:
            node = picks[-1]
            ordered = sorted((local[node][j], j) for j in candidates)
            candidates = [j for _, j in ordered[removal:]]
            if node != core_local:
                penalty[opponent[node]] *= opponent_penalty
            scores = [(inter[j] * penalty[opponent[j]] - intra[j]) / max(inter[j], intra[j])
                      for j in candidates]
            picks.append(candidates[int(np.argmin(scores))])
        output.extend(members[j] for j in picks)
    return output
