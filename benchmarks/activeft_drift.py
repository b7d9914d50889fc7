"""How many rows ActiveFT's bounds would score with tighter drifts: evidence, not a feature.

    python -m benchmarks.activeft_drift                           # the default (96 listed), then 32 and 128
    python -m benchmarks.activeft_drift --variants path:96:32 flat:96 path:96:8
    python -m benchmarks.activeft_drift --variants path:16 exact:16 lowrank:16:64:1

The default bounds (docs/selection.md, "Exact assignment") keep, per row, its 96 best centers, one
bound on every other, aged by the smaller of the largest path of any centroid (Cauchy–Schwarz) and the
row's own drift, split along its own centroid and across it, and a byte per other center, aged by its
own path. Each variant runs
``fit_centroids`` with the defaults on the same pool and start, and prints the share of rows scored
and tightened per iteration, the wall time, and whether it followed the default's trajectory (the
same final centroids, bit for bit; a variant only changes which rows are looked at again):

* ``path:D:L`` — the default bounds with ``D`` centers listed per row, and at most ``L`` similarities
  computed exactly per row to keep its center (else it is scored again);
* ``flat:D:L`` — the same without a byte per center: the centers not listed share the one bound on the
  rest, aged by the largest displacement of any of them;
* ``cauchy:D`` (and the two below, also without the bytes per center) — the bound before the split
  along the own centroid: every row's drift is Cauchy–Schwarz's;
* ``exact:D`` — the bound on the centers not listed aged instead by the row's own drift, the exact
  largest change of its similarity to any centroid, summed over iterations (one N×B×d product per
  iteration: what a perfect per-row drift would save, at the cost of the product it is meant to skip);
* ``lowrank:D:R:K`` — that per-row drift bounded through a rank-``R`` orthonormal basis of the last
  displacement, recomputed every ``K`` iterations: exact inside the basis, Cauchy–Schwarz on the
  remainder. Its rounding margins are generous, not proven: the trajectory check says whether it held.

Whichever is tighter, the default bound or the variant's, is used, so a variant never scores more rows
for a looser bound. Patches the assignment that ``activeft`` builds, in this process only.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path

from benchmarks.activeft_speed import load, machine, run_parser

# Absolute margins for the float32 products of the drift models (their errors are below 1e-5 for unit
# rows and steps below 0.1: γ_d·‖f‖‖Δ‖ with d = 1,280 is 7.6e-6; not proven for other pools).
PRODUCT_MARGIN = 1e-5


def drifting_assignment(kind: str, depth: int, rank: int = 0, refresh: int = 1, limit: int | None = None):
    """A ``BoundedAssignment`` whose bound on the centers not listed may also age by a per-row drift."""
    import numpy
    import torch

    from active_finetuning.selection.bounds import BoundedAssignment

    class Drifting(BoundedAssignment):
        def __init__(self, scorer):
            # The per-row models age the one bound on the rest from the row's scoring: without the bytes per
            # center, that bound is only made again when the row is scored.
            super().__init__(scorer, depth, coded=kind == "path", **({} if limit is None else {"tighten_limit": limit}))
            n = scorer.points.shape[0]
            self.model_drift = torch.zeros(n, dtype=torch.float64)  # the model's per-row drift, summed
            self.model_drift_at = torch.zeros(n, dtype=torch.float64)  # its value when the row was scored
            self.basis = None

        def _advance(self, centers):
            before = self.previous
            super()._advance(centers)
            if kind in ("path", "flat", "cauchy") or before is None or before.shape != self.previous.shape:
                return
            step = self.previous - before  # B×d, float64
            largest = float(torch.linalg.vector_norm(step, dim=1).max()) * self.norm_max
            self.model_drift += self._model_drift(step).clamp_max(largest)

        def _row_drift(self, delta, largest):
            if kind == "cauchy":  # no projection on the own center: Cauchy–Schwarz for every row
                return torch.full_like(self.drift, self.norm_max * largest)
            return super()._row_drift(delta, largest)

        def _model_drift(self, step):
            points = self.scorer.points
            if kind == "exact":
                return (points @ step.float().T).amax(dim=1).double() + PRODUCT_MARGIN
            if self.basis is None or self.iteration % refresh == 0:
                self.basis = torch.linalg.svd(step, full_matrices=False).Vh[:rank].T.contiguous()
                self.projected = (points @ self.basis.float()).double()
                remainder = (self.scorer.norm**2 - (self.projected**2).sum(dim=1)).clamp_min(0).sqrt()
                self.remainder = remainder * 1.001 + 1e-6
            inside = step @ self.basis
            outside = ((step**2).sum(dim=1) - (inside**2).sum(dim=1)).clamp_min(0).sqrt().max() * 1.001 + 1e-9
            within = (self.projected.float() @ inside.T.float()).amax(dim=1).double() + PRODUCT_MARGIN
            return within + self.remainder * float(outside)

        def drift_since_scored(self):
            drift = super().drift_since_scored()
            if kind in ("path", "flat", "cauchy"):
                return drift
            return numpy.minimum(drift, (self.model_drift - self.model_drift_at).numpy())

        def drift_since_rest(self):
            return super().drift_since_rest() if kind in ("path", "flat") else self.drift_since_scored()

        def _score(self, centers, rows):
            super()._score(centers, rows)
            self.model_drift_at[rows] = self.model_drift[rows]

    return Drifting


def run_variant(features, init, iterations: int, spec: str) -> dict:
    import torch

    from active_finetuning.selection import activeft, bounds

    kind, *numbers = spec.split(":")
    if kind in ("path", "flat"):
        depth, limit = (list(map(int, numbers)) + [bounds.DEPTH, bounds.TIGHTEN_LIMIT][len(numbers):])[:2]
        variant = drifting_assignment(kind, depth, limit=limit)
    else:
        depth, rank, refresh = (list(map(int, numbers)) + [bounds.DEPTH, 16, 1][len(numbers):])[:3]
        variant = drifting_assignment(kind, depth, rank, refresh)
    original = activeft.make_assignment
    activeft.make_assignment = lambda scorer, mode: variant(scorer) if mode == "bounded" else original(scorer, mode)
    try:
        started = time.perf_counter()
        result = activeft.fit_centroids(features, features[init].clone(),
                                        activeft.ActiveFTParams(iterations=iterations))
        seconds = time.perf_counter() - started
    finally:
        activeft.make_assignment = original
    digest = hashlib.sha1(result.theta.to(torch.float32).numpy().tobytes()).hexdigest()
    return {"variant": spec, "seconds": round(seconds, 1), "rows_scored": result.assignment["rows_scored"],
            "rows_tightened": result.assignment["rows_tightened"], "final_loss": result.final_loss,
            "centroids_sha1": digest}


def main(argv: list[str] | None = None) -> None:
    parser = run_parser(__doc__)
    parser.add_argument("--variants", nargs="+", default=["path:96", "path:32", "path:128"],
                        help="path:D:L, flat:D:L, cauchy:D, exact:D or lowrank:D:R:K (see above); "
                             "the first is the trajectory's reference")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if not Path(args.features).exists():
        raise SystemExit(f"no features at {args.features}: pass --features (a features Parquet artifact)")
    import torch

    torch.set_num_threads(args.threads)
    _, features = load(args.features)
    init = random.Random(args.seed).sample(range(features.shape[0]), args.budget)
    print(json.dumps(machine()))
    rows = []
    for spec in args.variants:
        row = run_variant(features, init, args.iterations, spec)
        row["same_trajectory"] = row["centroids_sha1"] == rows[0]["centroids_sha1"] if rows else True
        rows.append(row)
        print(f"{spec:>20}: {row['seconds']:7.1f} s, rows scored {row['rows_scored']:.3f}, "
              f"tightened {row['rows_tightened']:.3f}, final loss {row['final_loss']:.9f}, "
              f"same trajectory as {args.variants[0]}: {row['same_trajectory']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
