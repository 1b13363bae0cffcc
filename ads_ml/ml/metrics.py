"""The advertising ratios, with the one rule everything relies on: a ratio whose denominator is
zero (or missing) is *missing* (NaN), never 0 — an entity that spends and gets no leads has no CPL;
it must not look like the cheapest one.

All functions take scalars, NumPy arrays or pandas Series and return float64 of the same shape.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ads_ml import settings


def safe_ratio(numerator, denominator, scale: float = 1.0):  # noqa: ANN001, ANN201
    """``numerator / denominator * scale``; NaN where the denominator is 0 or missing."""
    num = _as_float(numerator)
    den = _as_float(denominator)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = np.where((den != 0) & ~np.isnan(den), num / np.where(den == 0, np.nan, den), np.nan)
    result = result * scale
    return _like(result, numerator, denominator)


def cpl(spend, leads):  # noqa: ANN001, ANN201
    """Cost per lead, in the account currency."""
    return safe_ratio(spend, leads)


def shrunk_cpl(spend, leads, reference_cpl: float, prior: float = settings.TIER_PRIOR_LEADS) -> np.ndarray:  # noqa: ANN001
    """Cost per lead shrunk toward ``reference_cpl`` by ``prior`` pseudo-leads:
    (spend + prior · reference) / (leads + prior). Few leads say little; a lead-less spender gets
    dearer with every unit spent."""
    spend = np.asarray(spend, dtype="float64")
    leads = np.asarray(leads, dtype="float64")
    return (spend + prior * reference_cpl) / (leads + prior)


def ctr(clicks, impressions):  # noqa: ANN001, ANN201
    """Click-through rate, in percent (clicks / impressions × 100)."""
    return safe_ratio(clicks, impressions, 100.0)


def cpc(spend, clicks):  # noqa: ANN001, ANN201
    """Cost per click, in the account currency."""
    return safe_ratio(spend, clicks)


def conversion_rate(leads, clicks):  # noqa: ANN001, ANN201
    """Leads per click, in percent."""
    return safe_ratio(leads, clicks, 100.0)


def frequency(impressions, reach):  # noqa: ANN001, ANN201
    """Average impressions per person reached."""
    return safe_ratio(impressions, reach)


def relative_change(current, previous):  # noqa: ANN001, ANN201
    """``(current - previous) / previous`` (0.1 = +10 %); NaN when previous is 0 or missing."""
    cur = _as_float(current)
    prev = _as_float(previous)
    return _like(safe_ratio(cur - prev, prev), current, previous)


def _as_float(value) -> np.ndarray:  # noqa: ANN001
    if isinstance(value, pd.Series):
        return pd.to_numeric(value, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return np.asarray(value, dtype="float64")


def _like(result: np.ndarray, *inputs):  # noqa: ANN001, ANN202
    for value in inputs:
        if isinstance(value, pd.Series):
            return pd.Series(result, index=value.index, dtype="float64")
    if np.ndim(result) == 0:
        return float(result)
    return result
