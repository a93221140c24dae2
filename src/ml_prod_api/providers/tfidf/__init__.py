"""The `tfidf` provider and everything it is made of, for serving and for training.

- `provider.py`: `TfidfProvider`, scoring and exact explanations, and `TfidfSettings`;
- `model.py`: `LinearTextModel`, the artifact format and its checked loading;
- `fast.py`: the exact, faster scorer the model serves with;
- `textnorm.py`: `normalize`, the one text normalisation of training and serving;
- `lexicon.py`: the word lists behind normalisation and the lexicon feature.
"""

from ml_prod_api.providers.tfidf.model import (
    ARTIFACT_FILE,
    ARTIFACT_FORMAT,
    METADATA_FILE,
    LinearTextModel,
    lexicon_hits,
    load_artifact,
)
from ml_prod_api.providers.tfidf.provider import LEXICON_FEATURE, TfidfProvider, TfidfSettings
from ml_prod_api.providers.tfidf.textnorm import normalize

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
