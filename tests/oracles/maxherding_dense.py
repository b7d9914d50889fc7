"""MaxHerding as the authors' loop computes it (BorealisAI/uherding, ``Herding.select_samples``): the
whole (L+U)² Gaussian kernel, a coverage vector, at each step the argmax of the mean positive gain
over the not-yet-picked candidates. Float64 throughout; a test oracle, O(N²) memory."""

import numpy as np


def dense_maxherding(unit: np.ndarray, budget: int, labeled=(), bandwidth: float = 1.0) -> list[int]:
    unit = np.asarray(unit, dtype=np.float64)
    distance = np.sqrt(np.maximum(((unit[:, None, :] - unit[None, :, :]) ** 2).sum(-1), 0.0))
    kernel = np.exp(-((distance / bandwidth) ** 2))
    labeled = list(labeled)
    coverage = kernel[labeled].max(axis=0) if labeled else np.zeros(len(unit))
    taken = set(labeled)
    picks = []
    for _ in range(budget):
        gain = np.maximum(kernel - coverage, 0.0).mean(axis=1)
        gain[list(taken)] = -np.inf
        row = int(np.argmax(gain))
        picks.append(row)
        taken.add(row)
        coverage = np.maximum(coverage, kernel[row])
    return picks
