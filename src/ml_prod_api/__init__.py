"""ml-prod-api: a production-grade text-toxicity classification service."""

__version__ = "0.1.0"
API_VERSION = "v1"
