"""The provider registry: a name maps to the provider's settings model, which builds it.

A leaf module: it imports no settings of the service and no provider until one is asked for, so
the default install needs neither torch nor onnxruntime. Adding a provider is one module (a
`Provider` and its `ProviderSettings`) and one line here.
"""

from __future__ import annotations

import importlib
from typing import Protocol

from ml_prod_api.errors import ModelLoadError
from ml_prod_api.providers.base import Provider, ProviderSettings

# name -> "module:ProviderSettings subclass"
_REGISTRY: dict[str, str] = {
    "stub": "ml_prod_api.providers.stub:StubSettings",
    "tfidf": "ml_prod_api.providers.tfidf:TfidfSettings",
    "transformer": "ml_prod_api.providers.transformer:TransformerSettings",
    "onnx": "ml_prod_api.providers.onnx:OnnxSettings",
    "cascade": "ml_prod_api.providers.cascade:CascadeSettings",
}


class UnknownProvider(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"unknown model provider {name!r}; valid providers: {', '.join(provider_names())}"
        )


class ProviderChoice(Protocol):
    """What `create_provider` reads: the service's `Settings` is one."""

    @property
    def model_provider(self) -> str: ...

    @property
    def provider_settings(self) -> ProviderSettings: ...


def provider_names() -> list[str]:
    return list(_REGISTRY)


def provider_settings_model(name: str) -> type[ProviderSettings]:
    """The settings model of the provider called `name` (its module is imported here)."""
    if name not in _REGISTRY:
        raise UnknownProvider(name)
    module_name, _, model_name = _REGISTRY[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(
            f"the {name} provider cannot be imported ({exc.name or exc}); "
            "is its requirements file installed?"
        ) from exc
    model: type[ProviderSettings] = getattr(module, model_name)
    return model


def create_provider(settings: ProviderChoice) -> Provider:
    """A new, unloaded provider of the chosen name, built from its own settings."""
    model = provider_settings_model(settings.model_provider)
    provider_settings = settings.provider_settings
    if not isinstance(provider_settings, model):
        raise TypeError(
            f"{type(provider_settings).__name__} cannot build the {settings.model_provider} "
            f"provider (expected {model.__name__})"
        )
    return provider_settings.build_provider()
