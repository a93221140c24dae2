"""A peer model server: LitServe serving the same TF-IDF model with its batching on
(max_batch_size 16, batch_timeout 5 ms). Run: python litserve_tfidf.py PORT"""

# No `from __future__ import annotations` here: LitServe reads decode_request's type hint at run
# time to build its request model, and a string hint turns the body into a query parameter.
import os
import sys
from pathlib import Path
from typing import Any

import litserve as ls
from pydantic import BaseModel

from ml_prod_api.providers.tfidf import TfidfProvider


class PredictRequest(BaseModel):
    text: str


class TfidfAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.model = TfidfProvider(Path(os.environ.get("MODEL_PATH", "models/tfidf")))
        self.model.load()
        self.threshold = self.model.default_threshold or 0.5

    def decode_request(self, request: PredictRequest) -> str:
        return request.text

    def predict(self, texts: list[str]) -> list[float]:
        return [s.probability_toxic for s in self.model.predict_batch(texts)]

    def encode_response(self, p: float) -> dict[str, Any]:
        return {
            "prediction": {
                "label": "toxic" if p >= self.threshold else "non-toxic",
                "probability_toxic": p, "model_version": self.model.version, "provider": "tfidf",
            }
        }


if __name__ == "__main__":
    api = TfidfAPI(max_batch_size=16, batch_timeout=0.005, api_path="/v1/predict")
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1,
                          healthcheck_path="/healthz")
    server.run(port=int(sys.argv[1]), host="127.0.0.1", generate_client_file=False,
               log_level="warning")
