"""Model providers: pure `texts -> scores` behind one contract (`base.py`), found by name in the
registry (`registry.py`)."""

from ml_prod_api.providers.base import Contribution, Provider, ProviderSettings, Score
from ml_prod_api.providers.registry import (
    UnknownProvider,
    create_provider,
    provider_names,
    provider_settings_model,
)

__all__ = [
    "Contribution",
    "Provider",
    "ProviderSettings",
    "Score",
    "UnknownProvider",
    "create_provider",
    "provider_names",
    "provider_settings_model",
]
