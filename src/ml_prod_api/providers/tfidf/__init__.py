"""The `tfidf` provider and everything it is made of, for serving and for training.

- `provider.py`: `TfidfProvider`, scoring and exact explanations, and `TfidfSettings`;
- `model.py`: `LinearTextModel`, the artifact format and its checked loading;
- `fast.py`: the exact, faster scorer the model serves with.

The text normalisation (`ml_prod_api.providers.textnorm.normalize`) and its word lists
(`ml_prod_api.providers.lexicon`) live beside the providers, since the sequence classifiers use
them too; `normalize` is re-exported here, where training has always found it.
"""

from ml_prod_api.providers.textnorm import normalize
from ml_prod_api.providers.tfidf.model import (
    ARTIFACT_FILE,
    ARTIFACT_FORMAT,
    METADATA_FILE,
    LinearTextModel,
    lexicon_hits,
    load_artifact,
)
from ml_prod_api.providers.tfidf.provider import LEXICON_FEATURE, TfidfProvider, TfidfSettings

__all__ = [
    "ARTIFACT_FILE",
    "ARTIFACT_FORMAT",
    "LEXICON_FEATURE",
    "METADATA_FILE",
    "LinearTextModel",
    "TfidfProvider",
    "TfidfSettings",
    "lexicon_hits",
    "load_artifact",
    "normalize",
]
