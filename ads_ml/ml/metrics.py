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


#: Metrics in the account's currency, and those in percent (ctr = clicks / impressions × 100).
MONEY_METRICS = ("spend", "cpl", "cpc", "cpm", "budget", "daily_budget", "lifetime_budget")
PERCENT_METRICS = ("ctr",)


def metric_kind(name: str) -> str | None:
    """"money", "percent" or None for a metric or a column named after one (``spend_7d``, ``cpl_vs_account``
    is a ratio, so None)."""
    base = name.lower()
    if any(word in base for word in ("_vs_", "ratio", "pct", "share", "_z", "trend", "slope", "_cv", "std")) \
            or base.endswith(("_p", "_p_value")):
        return None
    head = base.split("_")[0]
    if base in MONEY_METRICS or head in ("spend", "cpl", "cpc", "cpm") or base.endswith("budget"):
        return "money"
    if base in PERCENT_METRICS or head == "ctr":
        return "percent"
    return None


def format_value(metric: str, value, currency: str | None = None) -> str:  # noqa: ANN001
    """A metric's value as a person reads it: money with the account's currency (``1,191.00 BRL``),
    CTR as a percentage (``0.52 %``), counts without decimals."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    kind = metric_kind(metric)
    if kind == "money":
        return f"{value:,.2f} {currency or ''}".strip()
    if kind == "percent":
        return f"{value:.2f} %"
    return f"{value:,.2f}" if isinstance(value, float) and not float(value).is_integer() else f"{value:,.0f}"


def unit_columns(frame, currency: str | None):  # noqa: ANN001, ANN201 - a pandas DataFrame
    """``frame`` with money columns named with the currency (``spend_7d (BRL)``) and percent columns
    with %, for tables a person reads."""
    renamed = {}
    for column in frame.columns:
        kind = metric_kind(str(column))
        if kind == "money" and currency:
            renamed[column] = f"{column} ({currency})"
        elif kind == "percent":
            renamed[column] = f"{column} (%)"
    return frame.rename(columns=renamed)
