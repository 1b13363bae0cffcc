"""One dynamic partition per ad account; keys are account ids (letters, digits, '_', '-')."""

import dagster as dg

AD_ACCOUNT_PARTITIONS_NAME = "ad_account"

ad_account_partitions = dg.DynamicPartitionsDefinition(name=AD_ACCOUNT_PARTITIONS_NAME)
