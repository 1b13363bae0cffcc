"""Small helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from ads_ml.db.models import Base


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


def snapshot(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every row of every table we own, in a comparable form."""
    out = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(sa.select(table)).all()
            out[table.name] = sorted((tuple(str(v) for v in row) for row in rows))
    return out


def count(engine: sa.Engine, table: str, where: str = "1=1") -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"select count(*) from {table} where {where}")).scalar_one()


META_EXPORT = """
Day,Campaign ID,Campaign name,Ad Set ID,Ad set name,Ad ID,Ad name,Amount spent (BRL),Impressions,Reach,Frequency,Link clicks,Leads,Ad set budget,Ad delivery
2026-03-01,111,Leads BR,221,Broad 25-45,331,Video A,100.50,10000,8000,1.25,120,10,150,active
2026-03-01,111,Leads BR,221,Broad 25-45,332,Carousel B,50.25,5000,4500,,40,,150,inactive
2026-03-01,111,Leads BR,222,Lookalike 1%,333,Static C,30,3000,2900,1.03,25,3,Using campaign budget,active
2026-03-02,111,Leads BR,221,Broad 25-45,331,Video A,110,11000,8500,1.29,130,12,150,active
2026-03-02,111,Leads BR,222,Lookalike 1%,333,Static C,35.5,3500,3300,1.06,30,0,Using campaign budget,active
"""

CANONICAL = """
date,campaign_id,adset_id,ad_id,impressions,reach,clicks,spend,leads,conversions
2026-03-01,c1,s1,a1,1000,800,20,10.0,2,1
2026-03-01,c1,s1,a2,500,450,10,5.0,0,0
2026-03-02,c1,s1,a1,1200,900,25,12.0,3,2
"""
