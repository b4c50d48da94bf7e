"""Hot spots on H3 cells: the Getis-Ord Gi* statistic (pure, no I/O).

For cell i of a study area of n cells with counts x_j, binary weights w_ij = 1 for j in the
k = 1 ring of i (i itself and its up to six neighbours that lie in the study area), else 0:

    x̄ = Σ_j x_j / n            S = sqrt(Σ_j x_j² / n − x̄²)          W_i = Σ_j w_ij

    Gi*(i) = (Σ_j w_ij x_j − x̄ W_i) / (S · sqrt((n W_i − W_i²) / (n − 1)))

(Getis & Ord 1992, Ord & Getis 1995; with binary weights Σ_j w_ij² = W_i). Gi* is already a
z-score: under the null hypothesis of no spatial association it is approximately standard
normal, so |z| ≥ 1.645, 1.96 and 2.576 mark hot (z > 0) or cold (z < 0) spots at 90 %, 95 %
and 99 % confidence. Cells without events belong to the study area with x = 0: leaving them
out would make every cluster look average.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import h3.api.basic_int as h3
import numpy as np

from geoserver.geo.h3cells import to_signed, to_unsigned

#: (|z| threshold, confidence in percent), strongest first.
CONFIDENCE = ((2.576, 99), (1.96, 95), (1.645, 90))


def ring_neighbours(cell: int) -> list[int]:
    """Return a cell and its k = 1 neighbours as signed-bigint ids (the Gi* window)."""
    return [to_signed(c) for c in h3.grid_disk(to_unsigned(cell), 1)]


def windows(cells: Sequence[int],
            neighbours: Callable[[int], Iterable[int]] = ring_neighbours) -> np.ndarray:
    """Return, for each cell, the positions of its Gi* window inside ``cells`` (-1 padded)."""
    index = {c: i for i, c in enumerate(cells)}
    out = np.full((len(cells), 7), -1, dtype=np.int64)
    for i, cell in enumerate(cells):
        inside = [index[j] for j in neighbours(cell) if j in index][:7]
        out[i, :len(inside)] = inside
    return out


def gi_star_values(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Return Gi* z-scores for values ``x`` and window positions (see windows()); vectorised."""
    n = len(x)
    if n < 3:
        return np.zeros(n)
    mean = float(x.mean())
    s = math.sqrt(max(float((x * x).mean()) - mean * mean, 0.0))
    if s == 0.0:
        return np.zeros(n)
    valid = window >= 0
    w = valid.sum(axis=1).astype(np.float64)
    sums = np.where(valid, x[np.where(valid, window, 0)], 0.0).sum(axis=1)
    spread = s * np.sqrt(np.maximum(n * w - w * w, 0.0) / (n - 1))
    z = np.zeros(n)
    np.divide(sums - mean * w, spread, out=z, where=spread > 0)
    return z


def gi_star(counts: Mapping[int, float], cells: Sequence[int],
            neighbours: Callable[[int], Iterable[int]] = ring_neighbours) -> dict[int, float]:
    """Return the Gi* z-score of every cell of the study area (0.0 where it is undefined).

    ``counts`` maps cells to values (missing cells count 0); ``cells`` is the study area.
    With fewer than three cells or no variation at all there is nothing to test: all zeros.
    """
    x = np.array([float(counts.get(c, 0.0)) for c in cells], dtype=np.float64)
    z = gi_star_values(x, windows(cells, neighbours))
    return {c: float(v) for c, v in zip(cells, z, strict=True)}


def classify(z: float) -> tuple[str, int | None]:
    """Return ("hot" | "cold" | "none", confidence percent or None) for a z-score."""
    for threshold, confidence in CONFIDENCE:
        if abs(z) >= threshold:
            return ("hot" if z > 0 else "cold"), confidence
    return "none", None


def p_value(z: float) -> float:
    """Return the two-sided p-value of a standard-normal z-score."""
    return math.erfc(abs(z) / math.sqrt(2.0))
