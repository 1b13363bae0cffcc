"""Small helpers shared by the asset modules."""

from __future__ import annotations

import pandas as pd

OWNERS = ["team:data-engineering"]
LEVELS = ("campaign", "adset", "ad")


def markdown_table(frame: pd.DataFrame, max_rows: int = 10, floatfmt: str = ".2f") -> str:
    """A Markdown preview of the first rows (missing values shown as '—')."""
    if frame.empty:
        return "_no rows_"
    shown = frame.head(max_rows)
    return shown.to_markdown(floatfmt=floatfmt, missingval="—")
