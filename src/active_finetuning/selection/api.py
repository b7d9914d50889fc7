"""The one way in: ``select(features, budget, method, seed, **params) -> Selection``."""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import __version__
from ..data.artifacts import FeatureTable, Selection, read_features, read_selection
from ..data.cache import ArrayCache
from ..errors import InputError
from ..seeding import check_seed
from .budget import resolve_budget
from .exact import exact_matmul
from .registry import Picks, get_selector


@dataclass
class Pool:
    """What a selector sees: unit-norm float32 features, the rows that are already labeled, and
    what its parameters name, opened by :func:`select` (selectors do no I/O)."""

    features: torch.Tensor  # (N, d) float32, every row L2-normalised
    labeled: np.ndarray  # (L,) int64 rows already annotated (empty when none)
    sample_ids: np.ndarray | None = None  # (N,) str
    inputs: dict[str, Selection] = field(default_factory=dict)  # selection artifacts a parameter names, on the pool
    cache: ArrayCache | None = None  # the cache directory a parameter names

    @property
    def size(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])


# Rows normalised at once (keeps the float64 temporaries of the normalisation small).
NORMALISE_ELEMENTS = 1 << 20


def unit_rows(features: np.ndarray) -> torch.Tensor:
    """L2-normalised rows as a new float32 tensor (selectors never trust a 'normalized' flag).

    Norms and division are in float64, each row scaled by its largest magnitude first, so a row of
    1e-40 or of 1e20 still becomes a unit vector (float32 norms underflow or overflow there). Blocks
    of rows go to torch's number of threads (NumPy releases the GIL; each block is computed alike
    whichever thread takes it, so the result does not depend on the thread count).
    """
    array = np.asarray(features)
    if array.ndim != 2:
        raise InputError(f"features must be a 2-D array (rows × dimensions), got shape {array.shape}")
    out = np.empty(array.shape, dtype=np.float32)
    step = max(1, NORMALISE_ELEMENTS // max(1, array.shape[1]))

    def normalise(start: int) -> np.ndarray:
        block = array[start : start + step].astype(np.float64)
        scale = np.abs(block).max(axis=1, initial=0.0)
        usable = np.isfinite(scale) & (scale > 0)
        if usable.all():
            block /= scale[:, None]
            block /= np.sqrt(np.einsum("ij,ij->i", block, block))[:, None]
            out[start : start + step] = block
        return usable

    starts = range(0, len(array), step)
    with ThreadPoolExecutor(max(1, min(torch.get_num_threads(), len(starts)))) as pool:
        usable = np.concatenate([np.ones(0, dtype=bool), *pool.map(normalise, starts)])
    if not usable.all():
        bad = np.flatnonzero(~usable)
        raise InputError(f"{len(bad)} feature rows have no direction (all zero, NaN or infinite; first rows: "
                         f"{bad[:5].tolist()}); drop or repair them before selection")
    return torch.from_numpy(out)


def as_feature_table(features) -> FeatureTable:
    if isinstance(features, FeatureTable):
        return features
    if isinstance(features, (str, bytes)) or hasattr(features, "__fspath__"):
        return read_features(str(features))
    return FeatureTable.from_array(features)


def select(
    features,
    budget: int | str,
    method: str = "activeft",
    *,
    seed: int = 0,
    labeled=None,
    progress: bool = False,
    **params,
) -> Selection:
    """Select ``budget`` samples of the pool ``features`` with the registered ``method``.

    Args:
        features: a :class:`FeatureTable`, an (N, d) array, or a features artifact URI.
        budget: a sample count, or a percentage of the pool such as ``"1%"``.
        method: a registered selector name (see :func:`list_selectors`).
        seed: makes the selection reproducible: same inputs and seed, same selection.
        labeled: sample ids already annotated; they are never returned.
        progress: show a progress bar for long stages.
        **params: the method's parameters (see its parameter record).
    """
    spec = get_selector(method)
    seed = check_seed(seed)
    param_record = spec.make_params(**params)
    table = as_feature_table(features)
    count = resolve_budget(budget, len(table))
    labeled_rows = _labeled_rows(table, labeled)
    if count > len(table) - len(labeled_rows):
        raise InputError(
            f"budget {count} exceeds the {len(table) - len(labeled_rows)} unlabeled samples of the pool"
        )
    pool = Pool(unit_rows(table.features), labeled_rows, table.sample_ids)
    for name, (kind, uri) in param_record.resolved().items():
        if kind == "selection":
            pool.inputs[name] = read_selection(uri, table)
        else:
            pool.cache = ArrayCache(uri)
    started = time.perf_counter()
    with exact_matmul():  # a user's "medium" float32 matmul precision would compute in bfloat16
        picks = spec.fn(pool, count, param_record, seed=int(seed), progress=progress)
    elapsed = time.perf_counter() - started
    _check_picks(picks, count, pool, method)
    metadata = {
        "method": method,
        "budget": count,
        "budget_requested": str(budget),
        "seed": int(seed),
        "params": dataclasses.asdict(param_record),
        "pool_size": len(table),
        "labeled_count": int(len(labeled_rows)),
        "features_identity": table.identity(),
        "features_metadata": table.metadata,
        "library_version": __version__,
        **({"info": picks.info} if picks.info else {}),
    }
    role = np.asarray([picks.role] * count if isinstance(picks.role, str) else picks.role, dtype=object)
    selection = Selection(
        indices=np.asarray(picks.indices, dtype=np.int64),
        sample_ids=table.sample_ids[picks.indices],
        role=role,
        score=picks.score,
        pseudo_class=picks.pseudo_class,
        metadata=metadata,
        tables=picks.tables,
        seconds=elapsed,
    )
    return selection


def _labeled_rows(table: FeatureTable, labeled) -> np.ndarray:
    if labeled is None:
        return np.zeros(0, dtype=np.int64)
    from ..data.artifacts import check_string_ids, rows_of

    ids = list(labeled)
    check_string_ids(ids, "the labeled ids")
    if len(set(ids)) != len(ids):
        raise InputError("labeled ids contain duplicates; list each labeled sample once")
    return np.sort(rows_of(table, ids, what="the labeled set"))


def _check_picks(picks: Picks, count: int, pool: Pool, method: str) -> None:
    """Every selector must honour the contract: exactly ``count`` distinct, unlabeled pool rows."""
    indices = np.asarray(picks.indices)
    if indices.shape != (count,):
        raise RuntimeError(f"selector {method!r} returned {indices.shape} picks for budget {count}")
    if len(np.unique(indices)) != count:
        raise RuntimeError(f"selector {method!r} returned duplicate picks")
    if indices.min() < 0 or indices.max() >= pool.size:
        raise RuntimeError(f"selector {method!r} returned rows outside the pool")
    if len(pool.labeled) and np.isin(indices, pool.labeled).any():
        raise RuntimeError(f"selector {method!r} returned an already-labeled sample")
    if picks.score is not None and np.isinf(np.asarray(picks.score, dtype=np.float64)).any():
        raise InputError(f"{method}: some pick scores are infinite; the features or the parameters overflow "
                         "the computation — check the features for extreme values and the method's parameters")
