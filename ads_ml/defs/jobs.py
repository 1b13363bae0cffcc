"""Jobs over the account-partitioned assets."""

import dagster as dg

from ads_ml.defs.common import LEVELS

INSIGHTS_KEYS = [dg.AssetKey(f"{level}_insights") for level in LEVELS]

#: Everything computed from an account's insights: run when new insights arrive.
account_refresh_job = dg.define_asset_job(
    name="account_refresh",
    selection=dg.AssetSelection.assets(*INSIGHTS_KEYS).downstream(),
    description="Insights, features and everything downstream of them, for one ad account.",
)
