"""Jobs over the account-partitioned assets (one partition = one ad account)."""

import dagster as dg

from ads_ml.defs.common import LEVELS

INSIGHTS_KEYS = [dg.AssetKey(f"{level}_insights") for level in LEVELS]

#: Everything computed from an account's insights: run when new insights arrive.
account_refresh_job = dg.define_asset_job(
    name="account_refresh",
    selection=dg.AssetSelection.assets(*INSIGHTS_KEYS).downstream(),
    description="Insights, features and everything downstream of them, for one ad account.",
)

tier_training_job = dg.define_asset_job(
    name="tier_training",
    selection=dg.AssetSelection.assets(*[f"{level}_tier_classifier" for level in LEVELS]),
    description="Retrain the tier classifiers of every level from the stored insights.",
)

transfer_training_job = dg.define_asset_job(
    name="transfer_training",
    selection=dg.AssetSelection.assets("transfer_classifier"),
    description="Retrain the campaign-level transfer classifier.",
)


def classification_job(level: str):  # noqa: ANN201
    return dg.define_asset_job(
        name=f"{level}_classification",
        selection=dg.AssetSelection.assets(f"{level}_insights", f"{level}_features", f"{level}_classifications"),
        description=f"Refresh the {level} insights and features and classify every {level}.",
    )


classification_jobs = {level: classification_job(level) for level in LEVELS}
all_jobs = [account_refresh_job, tier_training_job, transfer_training_job, *classification_jobs.values()]
