"""The drift statistics, in NumPy: Kolmogorov–Smirnov, chi-square, PSI.

No SciPy (not a dependency of omops): the p-values come from the limiting
distributions, written out below. Every function takes whole arrays or
count vectors; nothing loops over rows in Python.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "EPSILON",
    "bin_counts",
    "chi2_homogeneity",
    "chi2_sf",
    "ks_2samp",
    "ks_pvalue",
    "psi",
    "quantile_edges",
]

#: The share given to a bin that one side has no values in (PSI is otherwise infinite).
EPSILON = 1e-4


def ks_2samp(reference_sorted: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov test: the statistic D and its two-sided p-value.

    ``reference_sorted`` must be sorted (the reference is sorted once and reused).
    D is the largest distance between the two empirical distribution
    functions, evaluated at every value of both samples (ties included).

    Examples
    --------
    >>> d, p = ks_2samp(np.arange(100.0), np.arange(100.0) + 50)
    >>> round(d, 2), p < 1e-9
    (0.5, True)
    """
    n, m = len(reference_sorted), len(current)
    if n == 0 or m == 0:
        return float("nan"), float("nan")
    current_sorted = np.sort(current)
    points = np.concatenate([reference_sorted, current_sorted])
    cdf_reference = np.searchsorted(reference_sorted, points, side="right") / n
    cdf_current = np.searchsorted(current_sorted, points, side="right") / m
    statistic = float(np.max(np.abs(cdf_reference - cdf_current)))
    return statistic, ks_pvalue(statistic, n, m)


#: Samples up to this size (the larger of the two) get the exact KS p-value.
EXACT_KS = 10_000
#: ... when the exact computation's grid (n x m) is at most this large.
EXACT_KS_CELLS = 25_000_000


def ks_pvalue(statistic: float, n: int, m: int) -> float:
    """P(D >= statistic) for samples of ``n`` and ``m`` values from one distribution.

    Exact (as SciPy's ``ks_2samp`` in its default mode) for samples of up to
    :data:`EXACT_KS` values with ``n m`` up to :data:`EXACT_KS_CELLS`: the share
    of lattice paths from (0, 0) to (n, m) that leave the band
    ``|i/n - j/m| < D``, counted one row at a time with a cumulative sum.
    Otherwise Kolmogorov's limiting distribution at
    ``(sqrt(e) + 0.12 + 0.11 / sqrt(e)) D`` with ``e = n m / (n + m)``
    (Stephens' correction), within 0.005 of SciPy's value at those sizes.
    """
    if max(n, m) <= EXACT_KS and n * m <= EXACT_KS_CELLS:
        return _ks_exact(round(statistic * n * m), n, m)
    effective = n * m / (n + m)
    root = math.sqrt(effective)
    return _kolmogorov_sf((root + 0.12 + 0.11 / root) * statistic)


def _ks_exact(h: int, n: int, m: int) -> float:
    """P(max |i/n - j/m| >= h / (n m)) over paths to (n, m): the exact two-sided p-value."""
    if h <= 0:
        return 1.0
    if n > m:
        n, m = m, n  # the same probability; loop over the shorter side
    j = np.arange(m + 1, dtype="int64")
    row = (j * n < h).astype("float64")  # row 0: the paths along the first edge
    log_scale = 0.0
    for i in range(1, n + 1):
        inside = np.abs(i * m - j * n) < h
        # inside[] is one run of j: a path reaches (i, j) from (i-1, k) for k in the run up to j
        row = np.cumsum(row * inside) * inside
        top = row.max()
        if top == 0.0:
            return 1.0  # no path stays inside the band
        row /= top
        log_scale += math.log(top)
    paths = math.lgamma(n + m + 1) - math.lgamma(n + 1) - math.lgamma(m + 1)
    if row[m] == 0.0:
        return 1.0
    inside_share = math.exp(math.log(row[m]) + log_scale - paths)
    return float(min(1.0, max(0.0, 1.0 - inside_share)))


def _kolmogorov_sf(x: float) -> float:
    """Survival function of the Kolmogorov distribution: 2 Σ (-1)^(k-1) exp(-2 k² x²)."""
    if x < 0.2:
        return 1.0  # the series converges slowly here, and the value is 1.0 to 1e-9
    k = np.arange(1, 101)
    terms = 2.0 * (-1.0) ** (k - 1) * np.exp(-2.0 * k * k * x * x)
    return float(min(1.0, max(0.0, terms.sum())))


def quantile_edges(reference_sorted: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (fewer where values repeat).

    ``bins`` bins hold about the same share of the reference each; a value
    ``v`` falls in bin ``searchsorted(edges, v, side='right')``.
    """
    if len(reference_sorted) == 0:
        return np.empty(0)
    quantiles = np.quantile(reference_sorted, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.unique(quantiles)


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """How many ``values`` fall in each bin of ``edges`` (``len(edges) + 1`` bins)."""
    index = np.searchsorted(edges, values, side="right")
    return np.bincount(index, minlength=len(edges) + 1)


def psi(expected: np.ndarray, actual: np.ndarray) -> Any:
    """Population stability index of ``actual`` counts against ``expected`` counts.

    ``Σ (a - e) ln(a / e)`` over the bins' shares; a share of zero counts as
    :data:`EPSILON`. ``actual`` may be 2-D (one row of counts per time bucket):
    then one PSI per row. A side with no values at all gives NaN.

    Examples
    --------
    >>> float(psi(np.array([50, 50]), np.array([50, 50])))
    0.0
    >>> round(float(psi(np.array([50, 50]), np.array([90, 10]))), 3)
    0.879
    """
    expected = np.asarray(expected, dtype="float64")
    actual = np.asarray(actual, dtype="float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.maximum(expected / expected.sum(), EPSILON)
        a = np.maximum(actual / actual.sum(axis=-1, keepdims=True), EPSILON)
        return ((a - e) * np.log(a / e)).sum(axis=-1)


def chi2_homogeneity(expected: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """Chi-square test that two count vectors over the same categories share a distribution.

    The 2 x k contingency table of the reference's and the window's counts
    (no continuity correction); categories neither side has are left out.
    Returns the statistic and its p-value with ``k - 1`` degrees of freedom.

    Examples
    --------
    >>> stat, p = chi2_homogeneity(np.array([100, 100]), np.array([100, 100]))
    >>> stat, p
    (0.0, 1.0)
    """
    table = np.vstack([expected, actual]).astype("float64")
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    total = table.sum()
    fitted = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / total
    statistic = float(((table - fitted) ** 2 / fitted).sum())
    return statistic, chi2_sf(statistic, table.shape[1] - 1)


def chi2_sf(x: float, dof: int) -> float:
    """P(X >= x) for a chi-square variable with ``dof`` degrees of freedom.

    The regularized upper incomplete gamma function Q(dof/2, x/2): a series
    below ``a + 1``, a continued fraction above (Lentz's method).

    Examples
    --------
    >>> round(chi2_sf(3.841458820694124, 1), 6)
    0.05
    """
    a, half = dof / 2.0, x / 2.0
    if half <= 0:
        return 1.0
    log_front = -half + a * math.log(half) - math.lgamma(a)
    if half < a + 1.0:
        term = total = 1.0 / a
        denominator = a
        for _ in range(10_000):
            denominator += 1.0
            term *= half / denominator
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return float(min(1.0, max(0.0, 1.0 - total * math.exp(log_front))))
    tiny = 1e-300
    b = half + 1.0 - a
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return float(min(1.0, max(0.0, math.exp(log_front) * h)))
