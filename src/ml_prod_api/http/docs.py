"""The API docs pages, `/docs` (Swagger UI) and `/redoc` (ReDoc), with everything they load served
from this package: no CDN, so the pages work on a machine without internet access, and no third
party can change the script that runs next to Swagger UI's "Authorize" box, where API keys are
typed.

The pages are FastAPI's own (`get_swagger_ui_html`, `get_redoc_html`, its documented recipe for
self-hosted docs assets) pointed at `/docs/assets/...`; the files come from the npm packages
`swagger-ui-dist` and `redoc`, with their versions and SHA-256 in `docs_assets/MANIFEST.json`
(`scripts/vendor_docs_assets.py` fetches them; `tests/test_docs_assets.py` checks them). Each page
carries a Content-Security-Policy that allows scripts, styles and requests from this origin only;
Swagger UI's one inline script (its settings) is allowed by its hash, computed from the page as
served. ReDoc needs `'unsafe-inline'` styles (styled-components injects `<style>` elements) and
`blob:` workers (its search index); scripts stay same-origin on both pages.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS_DIR = Path(__file__).with_name("docs_assets")
ASSETS_PATH = "/docs/assets"

_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}
# Inline <script> elements without attributes: the ones a CSP must allow by hash.
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
_COMMON_POLICY = (
    "default-src 'none'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@cache
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ASSETS_DIR / "MANIFEST.json").read_text())
    return data


def _asset_url(root_path: str, name: str) -> str:
    # The package version in the query string: a browser's cached copy ends with an upgrade.
    entry = manifest()["files"][name]
    version = manifest()["packages"][entry["package"]]["version"]
    return f"{root_path}{ASSETS_PATH}/{name}?v={version}"


def _script_hashes(html: str) -> str:
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(html)
    )


def swagger_ui_policy(html: str) -> str:
    return f"{_COMMON_POLICY}; script-src 'self' {_script_hashes(html)}; style-src 'self'"


REDOC_POLICY = (
    f"{_COMMON_POLICY}; script-src 'self'; style-src 'self' 'unsafe-inline'; worker-src blob:"
)


def docs_router(*, title: str, openapi_url: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{title} - Swagger UI",
            swagger_js_url=_asset_url(root, "swagger-ui-bundle.js"),
            swagger_css_url=_asset_url(root, "swagger-ui.css"),
            swagger_favicon_url=_asset_url(root, "favicon-32x32.png"),
        )
        html = bytes(page.body).decode()
        page.headers["Content-Security-Policy"] = swagger_ui_policy(html)
        return page

    @router.get("/redoc")
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=_asset_url(root, "redoc.standalone.js"),
            redoc_favicon_url=_asset_url(root, "favicon-32x32.png"),
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = REDOC_POLICY
        return page

    @router.get(ASSETS_PATH + "/{name}")
    async def asset(name: str) -> FileResponse:
        # Only the files in the manifest, by exact name: nothing else under the folder, no paths.
        if name not in manifest()["files"]:
            raise HTTPException(status_code=404)
        return FileResponse(
            ASSETS_DIR / name,
            media_type=_MEDIA_TYPES[Path(name).suffix],
            headers={"Cache-Control": "public, max-age=86400"},
        )

    return router
