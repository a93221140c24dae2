"""The provider registry: a name maps to a factory; imports stay lazy so the default install
needs neither torch nor onnxruntime."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ml_prod_api.errors import ModelLoadError
from ml_prod_api.providers.base import Contribution, Provider, Score

if TYPE_CHECKING:
    from ml_prod_api.settings import Settings

__all__ = [
    "Contribution",
    "Provider",
    "Score",
    "UnknownProvider",
    "create_provider",
    "provider_names",
]

# name -> "module:factory"; each factory takes Settings and returns an unloaded Provider.
_REGISTRY: dict[str, str] = {
    "stub": "ml_prod_api.providers.stub:from_settings",
    "tfidf": "ml_prod_api.providers.tfidf.provider:from_settings",
    "transformer": "ml_prod_api.providers.transformer:from_settings",
    "onnx": "ml_prod_api.providers.onnx:from_settings",
}


class UnknownProvider(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"unknown model provider {name!r}; valid providers: {', '.join(provider_names())}"
        )


def provider_names() -> list[str]:
    return list(_REGISTRY)


def create_provider(settings: Settings) -> Provider:
    name = settings.model_provider
    if name not in _REGISTRY:
        raise UnknownProvider(name)
    module_name, _, factory_name = _REGISTRY[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(
            f"the {name} provider cannot be imported ({exc.name or exc}); "
            "is its requirements file installed?"
        ) from exc
    provider: Provider = getattr(module, factory_name)(settings)
    return provider
