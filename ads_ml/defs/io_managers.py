"""The model IO manager: model assets return :class:`ModelArtifact` (or a list of them, or
``None`` when there was too little data); it writes files and ``ml_trained_models`` rows through
:class:`ModelRegistry` and loads the newest READY model(s), checksum verified."""

from collections.abc import Sequence

import dagster as dg

from ads_ml.db.model_registry import ModelArtifact, ModelNotFoundError, StoredModel
from ads_ml.defs.resources import DatabaseResource, ModelStoreResource

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


class ModelIOManager(dg.ConfigurableIOManager):
    database: dg.ResourceDependency[DatabaseResource]
    model_store: dg.ResourceDependency[ModelStoreResource]

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
            return registry.load_all(account_id, name, entity_type)
        try:
            return registry.load(account_id, name, entity_type)
        except ModelNotFoundError as exc:
            if not metadata.get(ALLOW_MISSING_KEY):
                raise
            context.log.info(f"{exc}; continuing without it")
            return None
