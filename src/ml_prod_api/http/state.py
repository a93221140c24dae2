"""What routes, handlers and the lifespan need from the app: one typed object on `app.state`.

`create_app` attaches it once and everything reads it through `app_state(app)`; nothing else is
kept on `app.state`. A function rather than `Depends` aliases: FastAPI's dependency solving costs
more per request than the rest of a prediction route, and one way to reach the app's parts is
easier to follow than two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.applications import Starlette

if TYPE_CHECKING:
    from ml_prod_api.http.ratelimit import RateLimiter
    from ml_prod_api.metrics import Metrics
    from ml_prod_api.multiproc import WorkerBoard
    from ml_prod_api.serving import InferenceService
    from ml_prod_api.settings import Settings


@dataclass(slots=True)
class AppState:
    settings: Settings
    service: InferenceService
    metrics: Metrics
    rate_limiter: RateLimiter | None
    worker_board: WorkerBoard | None  # with several workers: readiness counts all of them

    def attach(self, app: Starlette) -> None:
        app.state.parts = self


def app_state(app: Starlette) -> AppState:
    state: AppState = app.state.parts
    return state
