"""Real public advertising data (../shared/data) through the importer and the features."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ads_ml.db.queries import load_features
from ads_ml.ingest.csvfile import InputFileError
from ads_ml.ingest.insights import import_insights
from ads_ml.runner import materialize_account
from ads_ml_tests.helpers import count

MONTHS = {"April": 4, "May": 5, "June": 6}


def convert_online_advertising(source: pd.DataFrame) -> pd.DataFrame:
    """campaign_number -> campaign, user_engagement × placement -> adset, banner -> ad,
    displays -> impressions, cost -> spend, post_click_conversions -> leads (no reach)."""
    placement = source["placement"].fillna("#N/A")
    adset = source["campaign_number"] + "|" + source["user_engagement"] + "|" + placement
    return pd.DataFrame(
        {
            "date": [dt.date(2020, MONTHS[m], d).isoformat() for m, d in zip(source["month"], source["day"])],
            "campaign_id": source["campaign_number"],
            "adset_id": adset,
            "ad_id": adset + "|" + source["banner"],
            "ad_name": source["banner"],
            "impressions": source["displays"],
            "clicks": source["clicks"],
            "spend": source["cost"],
            "leads": source["post_click_conversions"],
        }
    )


@pytest.fixture(scope="module")
def online_advertising(shared_data) -> pd.DataFrame:
    return pd.read_csv(shared_data / "online_advertising_performance_data.csv", keep_default_na=False, na_values=[""])


def test_real_quirks_are_refused_with_their_row(engine, tmp_path, online_advertising):
    raw = convert_online_advertising(online_advertising)
    path = tmp_path / "raw.csv"
    raw.to_csv(path, index=False)
    first_bad = int(np.flatnonzero(raw["clicks"] > raw["impressions"])[0]) + 2
    with pytest.raises(InputFileError, match=rf"row {first_bad}, column \"clicks\": clicks \(\d+\) exceed impressions"):
        import_insights(engine, path, "act_online")
    assert count(engine, "daily_insights") == 0


def test_cleaned_real_data_imports_and_materialises(dagster_instance, engine, tmp_path, online_advertising):
    raw = convert_online_advertising(online_advertising)
    cleaned = raw.loc[raw["clicks"] <= raw["impressions"]]
    keys = ["date", "campaign_id", "adset_id", "ad_id", "ad_name"]
    cleaned = cleaned.groupby(keys, as_index=False)[["impressions", "clicks", "spend", "leads"]].sum()
    path = tmp_path / "online.csv"
    cleaned.to_csv(path, index=False)

    result = import_insights(engine, path, "act_online", batch_rows=4000)
    assert result.rows == len(cleaned)
    assert (result.first_date, result.last_date) == (dt.date(2020, 4, 1), dt.date(2020, 6, 30))
    assert result.campaigns_created == 3 and result.ads_created == cleaned["ad_id"].nunique()

    base = [f"{level}_{kind}" for level in ("campaign", "adset", "ad") for kind in ("insights", "features")]
    assert materialize_account("act_online", base, instance=dagster_instance).success
    ads = load_features(engine, "act_online", "ad")
    assert len(ads) == cleaned["ad_id"].nunique()
    # Ads that spent without a conversion have no CPL — never a CPL of 0.
    no_leads = ads.loc[(ads["leads_7d"] == 0) & (ads["spend_7d"] > 0)]
    assert len(no_leads) > 0 and no_leads["cpl_7d"].isna().all()
    # No reach in this dataset: reach and frequency are missing, not zero.
    assert ads["reach_7d"].isna().all() and ads["frequency_7d"].isna().all()
    campaigns = load_features(engine, "act_online", "campaign")
    assert campaigns["share_of_parent_spend_7d"].sum() == pytest.approx(1.0)
    last_week = cleaned.loc[cleaned["date"] > "2020-06-23"]
    assert campaigns["spend_7d"].sum() == pytest.approx(last_week["spend"].sum(), rel=1e-9)
