"""Fault injection for the provider-fault drill, loaded only by that drill.

The drill puts this folder on the server's PYTHONPATH, so Python imports it at start-up. It makes
the stub provider hang on texts carrying `RELIABILITY_HANG_MARKER` for `RELIABILITY_HANG_SECONDS`:
a hang on one input, after a normal warm-up (`STUB_DELAY_MS` would hang every call, the warm-up
prediction included, and the server would never become ready). Nothing else changes.
"""

from __future__ import annotations

import os
import time

_MARKER = os.environ.get("RELIABILITY_HANG_MARKER")
if _MARKER:
    from ml_prod_api.providers import stub

    _seconds = float(os.environ.get("RELIABILITY_HANG_SECONDS", "3600"))
    _original = stub.StubProvider.predict_batch

    def _predict_batch(self, texts):  # type: ignore[no-untyped-def]
        if any(_MARKER in text for text in texts):
            time.sleep(_seconds)
        return _original(self, texts)

    stub.StubProvider.predict_batch = _predict_batch  # type: ignore[method-assign]
