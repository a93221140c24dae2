"""Broken model artifacts for the bad-artifact drills, built here, never downloaded.

Each builder makes a folder that one provider refuses to load, and says which words the refusal
must contain. `from_real` variants start from the trained tfidf artifact when it is present.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def _good_tfidf_metadata(folder: Path, model: bytes) -> None:
    import hashlib

    import sklearn

    metadata = {
        "sklearn_version": sklearn.__version__,
        "artifact": {"sha256": hashlib.sha256(model).hexdigest()},
    }
    (folder / "metadata.json").write_text(json.dumps(metadata))


def build_bad_artifact(kind: str, root: Path) -> tuple[str, Path, str]:
    """(provider, MODEL_PATH, words the reason must contain)."""
    folder = root / kind
    folder.mkdir()
    if kind == "missing_model_file":
        _good_tfidf_metadata(folder, b"")
        return "tfidf", folder, "model file not found"
    if kind == "truncated_model_file":
        payload = b"\x80\x04\x95" + b"\x00" * 40  # a pickle cut off after its header
        (folder / "model.joblib").write_bytes(payload)
        _good_tfidf_metadata(folder, payload)
        return "tfidf", folder, "could not be loaded"
    if kind == "other_sklearn_version":
        payload = b"not read: the version is checked first"
        (folder / "model.joblib").write_bytes(payload)
        _good_tfidf_metadata(folder, payload)
        metadata = json.loads((folder / "metadata.json").read_text())
        metadata["sklearn_version"] = "1.0.2"
        (folder / "metadata.json").write_text(json.dumps(metadata))
        return "tfidf", folder, "scikit-learn 1.0.2"
    if kind == "tokenizer_without_model":
        _tokenizer_files(folder)
        return "onnx", folder, "ONNX model not found"
    if kind == "onnx_file_not_onnx":
        _tokenizer_files(folder)
        (folder / "model.onnx").write_bytes(b"this is not a protobuf\n" * 50)
        return "onnx", folder, "not a loadable ONNX model"
    raise AssertionError(kind)


def _tokenizer_files(folder: Path) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hello": 4, "world": 5}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "config.json").write_text(
        json.dumps({"id2label": {"0": "non-toxic", "1": "toxic"}, "max_position_embeddings": 64})
    )
    (folder / "metadata.json").write_text(json.dumps({"max_seq_length": 64}))


BAD_ARTIFACTS = [
    "missing_model_file",
    "truncated_model_file",
    "other_sklearn_version",
    "tokenizer_without_model",
    "onnx_file_not_onnx",
]


def build_from_real(kind: str, real: Path, root: Path) -> tuple[str, Path, str]:
    """Variants of the real tfidf artifact: cut in half (the sha256 no longer matches), or cut in
    half with the metadata rewritten to match (so unpickling itself fails)."""
    folder = root / kind
    shutil.copytree(real, folder)
    model = folder / "model.joblib"
    data = model.read_bytes()[: model.stat().st_size // 2]
    model.write_bytes(data)
    if kind == "real_model_truncated":
        return "tfidf", folder, "is corrupt or was replaced"
    if kind == "real_model_truncated_sha_matching":
        import hashlib

        metadata = json.loads((folder / "metadata.json").read_text())
        metadata["artifact"]["sha256"] = hashlib.sha256(data).hexdigest()
        (folder / "metadata.json").write_text(json.dumps(metadata))
        return "tfidf", folder, "could not be loaded"
    raise AssertionError(kind)
