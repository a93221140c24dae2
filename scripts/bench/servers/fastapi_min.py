"""The framework's own cost: a minimal FastAPI route with a validated body and a fixed answer."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Body(BaseModel):
    text: str


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/predict")
async def predict(body: Body) -> dict[str, dict[str, object]]:
    return {
        "prediction": {
            "label": "non-toxic", "probability_toxic": 0.1, "model_version": "fixed",
            "provider": "none",
        }
    }
