"""IO managers. The model IO manager: model assets return :class:`ModelArtifact` (or a list of them, or
``None`` when there was too little data); it writes files and ``ml_trained_models`` rows through
:class:`ModelRegistry` and loads the newest READY model(s), checksum verified."""

import datetime as dt
from collections.abc import Sequence

import dagster as dg

from ads_ml import settings
from ads_ml.db import queries
from ads_ml.db.model_registry import ModelArtifact, ModelNotFoundError, StoredModel
from ads_ml.defs.common import retry_transient
from ads_ml.defs.resources import DatabaseResource, ModelStoreResource
from ads_ml.ml.features import FEATURE_COLUMNS
from ads_ml.ml.forecasting import BASELINE

#: Definition metadata keys a model asset sets so downstream loads know what to fetch.
MODEL_NAME_KEY = "ads_ml/model_name"
ENTITY_TYPE_KEY = "ads_ml/entity_type"
PER_ENTITY_KEY = "ads_ml/per_entity"
ALLOW_MISSING_KEY = "ads_ml/allow_missing"


def model_asset_metadata(model_name: str, entity_type: str, per_entity: bool = False, allow_missing: bool = False) -> dict:
    """Definition metadata of a model asset. ``allow_missing``: downstream assets receive None
    (and fall back to something else) when no READY model exists, e.g. after too little data."""
    return {
        MODEL_NAME_KEY: model_name,
        ENTITY_TYPE_KEY: entity_type,
        PER_ENTITY_KEY: per_entity,
        ALLOW_MISSING_KEY: allow_missing,
    }


class LoadedModels(dict):
    """Per-entity models by entity id, and ``skipped``: entity id -> why its file could not be used."""

    def __init__(self, models: dict[str, StoredModel], skipped: dict[str, str]) -> None:
        super().__init__(models)
        self.skipped = dict(skipped)


class ModelIOManager(dg.ConfigurableIOManager):
    database: dg.ResourceDependency[DatabaseResource]
    model_store: dg.ResourceDependency[ModelStoreResource]

    @retry_transient
    def handle_output(self, context: dg.OutputContext, obj: ModelArtifact | Sequence[ModelArtifact] | None) -> None:
        if obj is None:
            context.log.info("no model to store for this partition (see the asset's metadata for why)")
            return
        artifacts = [obj] if isinstance(obj, ModelArtifact) else list(obj)
        if not all(isinstance(a, ModelArtifact) for a in artifacts):
            raise TypeError("the model IO manager stores ModelArtifact objects (or a list of them)")
        registry = self.model_store.registry(self.database)
        stored = registry.save_many(context.partition_key, artifacts)
        if len(stored) == 1:
            model = stored[0]
            context.add_output_metadata(
                {
                    "model_id": model.id,
                    "model_version": model.version,
                    "model_path": dg.MetadataValue.path(model.path),
                    "checksum": model.checksum,
                }
            )
        else:
            context.add_output_metadata({"models_written": len(stored)})

    @retry_transient
    def load_input(self, context: dg.InputContext) -> StoredModel | dict[str, StoredModel] | None:
        upstream = context.upstream_output
        metadata = (upstream.definition_metadata or {}) if upstream is not None else {}
        name = metadata.get(MODEL_NAME_KEY) or context.asset_key.path[-1]
        entity_type = metadata.get(ENTITY_TYPE_KEY)
        if not entity_type:
            raise ValueError(f"asset {context.asset_key.to_user_string()} lacks '{ENTITY_TYPE_KEY}' metadata")
        registry = self.model_store.registry(self.database)
        account_id = context.asset_partition_key
        if metadata.get(PER_ENTITY_KEY):
            skipped: dict[str, str] = {}
            models = registry.load_all(account_id, name, entity_type, skipped=skipped)
            for entity_id, why in sorted(skipped.items()):
                context.log.warning(f"{why}; {entity_type} {entity_id}'s model is rebuilt for this run and at the next training")
            return LoadedModels(models, skipped)
        try:
            return registry.load(account_id, name, entity_type)
        except ModelNotFoundError as exc:
            if not metadata.get(ALLOW_MISSING_KEY):
                raise
            context.log.info(f"{exc}; continuing without it")
            return None


#: Definition metadata key: how a database-backed output is read back (see DatabaseIOManager).
STORED_AS_KEY = "ads_ml/stored_as"


def stored_as(kind: str, entity_type: str | None = None) -> dict:
    """Definition metadata of an asset whose value lives in the database: ``insights`` (the source
    tables), ``features`` (ml_features), ``ensemble_weights`` (ml_ensemble_weights +
    ml_forecast_validation), or ``table`` (a result table nobody loads as an input)."""
    return {STORED_AS_KEY: kind, **({ENTITY_TYPE_KEY: entity_type} if entity_type else {})}


class DatabaseIOManager(dg.ConfigurableIOManager):
    """The IO manager of every asset whose value is in the database: the step wrote its rows in its
    own transaction, so storing the output writes nothing more, and loading an input reads the
    database. Any process gets back the type the step expects — another worker of the multiprocess
    executor, a run launched by a schedule or sensor, a Kubernetes pod — with no pickle on a shared
    disk, and an account whose upstream was never materialised gets its (empty) data, not a
    FileNotFoundError.

    Insights are read as of the reference date and look-back of the asset partition's latest
    materialisation (its metadata), so a backfill with an explicit reference date is read back as
    it was computed; never materialised: the account's latest insight date."""

    database: dg.ResourceDependency[DatabaseResource]

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        return None

    @retry_transient
    def load_input(self, context: dg.InputContext) -> object:
        upstream = context.upstream_output
        metadata = (upstream.definition_metadata or {}) if upstream is not None else {}
        kind = metadata.get(STORED_AS_KEY)
        asset = context.asset_key.to_user_string()
        account_id = context.asset_partition_key
        level = metadata.get(ENTITY_TYPE_KEY)
        engine = self.database.engine()
        if kind == "insights":
            stored = _latest_materialisation_metadata(context)
            ref = _date_or_none(stored.get("reference_date"))
            if ref is None or stored.get("no_data"):
                ref = queries.reference_date(engine, account_id) or today()
            lookback = int(stored.get("lookback_days") or settings.INSIGHTS_LOOKBACK_DAYS)
            return queries.load_level_insights(engine, account_id, level, ref, lookback)
        if kind == "features":
            return queries.load_level_features(engine, account_id, level, list(FEATURE_COLUMNS), today())
        if kind == "ensemble_weights":
            return queries.load_calibration(engine, account_id, level, BASELINE)
        raise TypeError(f"{asset} is stored in its result table and is not loaded as an input (stored_as={kind!r})")


def today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def _date_or_none(value: object) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _latest_materialisation_metadata(context: dg.InputContext) -> dict:
    """Metadata values of the latest materialisation of the input's asset partition ({} if none)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[context.asset_partition_key]), limit=1
    ).records
    if not records:
        return {}
    materialization = records[0].event_log_entry.asset_materialization
    return {key: entry.value for key, entry in (materialization.metadata if materialization else {}).items()}
