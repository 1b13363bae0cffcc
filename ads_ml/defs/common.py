"""Small helpers shared by the asset modules."""

from __future__ import annotations

import pandas as pd

OWNERS = ["team:data-engineering"]
LEVELS = ("campaign", "adset", "ad")


def markdown_table(frame: pd.DataFrame, max_rows: int = 10, decimals: int = 2) -> str:
    """A Markdown preview of the first rows: floats rounded, missing values shown as '—', ids kept
    as written (never parsed as numbers)."""
    if frame.empty:
        return "_no rows_"

    def cell(value: object) -> str:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return "—"
        if isinstance(value, float):
            return f"{value:,.{decimals}f}"
        if isinstance(value, pd.Timestamp):
            return value.date().isoformat()
        return str(value)

    shown = frame.head(max_rows)
    if not isinstance(shown.index, pd.RangeIndex):
        shown = shown.reset_index()
    return shown.map(cell).to_markdown(index=False, disable_numparse=True)
