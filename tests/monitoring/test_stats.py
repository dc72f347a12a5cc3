"""The drift statistics against SciPy's (a test-only reference: omops does not depend on it)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from omops.monitoring import _stats


@pytest.mark.parametrize(
    ("n", "m", "shift"),
    [(10, 10, 0.8), (30, 30, 0.5), (100, 30, 0.2), (1000, 1000, 0.05), (5000, 5000, 0.03)],
)
def test_ks_matches_scipy_exactly_on_samples_it_computes_exactly(n, m, shift):
    rng = np.random.default_rng(n + m)
    for _ in range(5):
        a, b = rng.normal(size=n), rng.normal(shift, size=m)
        statistic, p_value = _stats.ks_2samp(np.sort(a), b)
        expected = scipy_stats.ks_2samp(a, b)
        assert statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert p_value == pytest.approx(expected.pvalue, abs=1e-9)


@pytest.mark.parametrize(("n", "m"), [(20000, 20000), (12000, 3000), (100000, 2000)])
def test_ks_asymptotic_p_value_is_close_to_scipys(n, m):
    rng = np.random.default_rng(n)
    for shift in (0.0, 0.02, 0.05):
        a, b = rng.normal(size=n), rng.normal(shift, size=m)
        statistic, p_value = _stats.ks_2samp(np.sort(a), b)
        expected = scipy_stats.ks_2samp(a, b)
        assert statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert p_value == pytest.approx(expected.pvalue, abs=0.005)


def test_ks_counts_ties_like_scipy():
    a = np.repeat([0.0, 1.0, 2.0], [50, 30, 20])
    b = np.repeat([0.0, 1.0, 2.0], [20, 30, 50])
    statistic, p_value = _stats.ks_2samp(np.sort(a), b)
    expected = scipy_stats.ks_2samp(a, b)
    assert (statistic, p_value) == pytest.approx((expected.statistic, expected.pvalue), abs=1e-9)


@pytest.mark.parametrize("dof", [1, 2, 3, 9, 50, 400])
@pytest.mark.parametrize("x", [0.01, 0.7, 3.84, 12.0, 80.0, 900.0])
def test_chi2_survival_function_matches_scipy(x, dof):
    assert _stats.chi2_sf(x, dof) == pytest.approx(
        scipy_stats.chi2.sf(x, dof), rel=1e-9, abs=1e-300
    )


def test_chi2_homogeneity_is_scipys_contingency_test_without_correction():
    expected, actual = np.array([500, 300, 200, 0]), np.array([40, 35, 10, 15])
    statistic, p_value = _stats.chi2_homogeneity(expected, actual)
    table = np.vstack([expected, actual])
    reference = scipy_stats.chi2_contingency(table, correction=False)
    assert statistic == pytest.approx(reference.statistic)
    assert p_value == pytest.approx(reference.pvalue)
    # one category only: nothing to compare
    assert _stats.chi2_homogeneity(np.array([10]), np.array([5])) == (0.0, 1.0)


def test_psi_of_equal_shares_is_zero_and_grows_with_the_shift():
    reference = np.sort(np.random.default_rng(0).normal(size=10000))
    edges = _stats.quantile_edges(reference, 10)
    assert len(edges) == 9
    base = _stats.bin_counts(reference, edges)
    assert base.tolist() == [1000] * 10
    assert float(_stats.psi(base, base)) == 0.0
    shifts = [0.1, 0.5, 1.0]
    values = [
        float(_stats.psi(base, _stats.bin_counts(reference + shift, edges))) for shift in shifts
    ]
    assert values == sorted(values) and values[0] < 0.1 < 0.2 < values[1]


def test_psi_handles_empty_bins_and_rows_of_counts():
    expected = np.array([50, 50, 0])
    actual = np.array([[50, 50, 0], [0, 0, 10], [0, 0, 0]])
    found = _stats.psi(expected, actual)
    assert found[0] == 0.0
    assert found[1] > 10  # everything in a bin the reference never had
    assert np.isnan(found[2])  # a bucket without values has no PSI
