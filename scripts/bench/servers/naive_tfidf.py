"""The naive baseline: a plain FastAPI `def` route calling the same TF-IDF model once per
request (in FastAPI's thread pool, no batching, no queue)."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from pydantic import BaseModel

from ml_prod_api.providers.tfidf import TfidfProvider

MODEL = TfidfProvider(Path(os.environ.get("MODEL_PATH", "models/tfidf")))
MODEL.load()
THRESHOLD = MODEL.default_threshold or 0.5
app = FastAPI()


class Body(BaseModel):
    text: str


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/predict")
def predict(body: Body) -> dict[str, dict[str, object]]:
    p = MODEL.predict_batch([body.text])[0].probability_toxic
    return {
        "prediction": {
            "label": "toxic" if p >= THRESHOLD else "non-toxic", "probability_toxic": p,
            "model_version": MODEL.version, "provider": "tfidf",
        }
    }
