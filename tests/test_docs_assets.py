"""The docs pages load everything from this service (no CDN), under a strict
Content-Security-Policy, from files that match their manifest and ship in the wheel."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ml_prod_api.api import create_app
from tests.conftest import make_settings
from tests.support.servers import ROOT

ASSETS = ROOT / "src" / "ml_prod_api" / "http" / "docs_assets"
MANIFEST: dict[str, Any] = json.loads((ASSETS / "MANIFEST.json").read_text())
PAGES = ("/docs", "/redoc")


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(make_settings())) as c:
        yield c


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_files_match_their_manifest() -> None:
    files = MANIFEST["files"]
    assert {p.name for p in ASSETS.iterdir()} == {*files, "MANIFEST.json"}
    for name, entry in files.items():
        data = (ASSETS / name).read_bytes()
        assert (len(data), _sha256(data)) == (entry["bytes"], entry["sha256"]), name
        assert entry["package"] in MANIFEST["packages"]
    assert not [name for name in files if name.endswith(".map")]
    # The majors FastAPI's pages are written for, and each bundle is the version recorded.
    versions = {name: p["version"] for name, p in MANIFEST["packages"].items()}
    assert versions["swagger-ui-dist"].startswith("5.")
    assert versions["redoc"].startswith("2.")
    for name, entry in files.items():
        if name.endswith(".js"):
            assert versions[entry["package"]].encode() in (ASSETS / name).read_bytes(), name


def _references(html: str) -> list[str]:
    """Every URL a page loads or links to: src and href attributes, and Swagger UI's `url:`."""
    found = re.findall(r"""(?:src|href|spec-url)\s*=\s*["']([^"']*)["']""", html)
    found += re.findall(r"""\burl:\s*'([^']*)'""", html)
    return found


@pytest.mark.parametrize("page", PAGES)
def test_a_docs_page_loads_only_same_origin_assets_that_match_the_manifest(
    client: TestClient, page: str
) -> None:
    r = client.get(page)
    assert r.status_code == 200
    refs = _references(r.text)
    assert refs
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
    assets = [ref for ref in refs if ref.startswith("/docs/assets/")]
    assert {ref for ref in refs if ref not in assets} == {"/openapi.json"}
    for ref in assets:
        served = client.get(ref)
        assert served.status_code == 200, ref
        name = ref.removeprefix("/docs/assets/").split("?")[0]
        assert _sha256(served.content) == MANIFEST["files"][name]["sha256"], ref
        expected_type = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
        assert served.headers["content-type"].startswith(expected_type[Path(name).suffix])


def _directives(policy: str) -> dict[str, list[str]]:
    out = {}
    for part in policy.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


@pytest.mark.parametrize("page", PAGES)
def test_a_docs_page_has_a_strict_content_security_policy(client: TestClient, page: str) -> None:
    r = client.get(page)
    policy = _directives(r.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["connect-src"] == ["'self'"]
    scripts = policy["script-src"]
    assert scripts[0] == "'self'"
    # Nothing but this origin and the page's own inline scripts, by hash.
    inline = re.findall(r"<script>(.*?)</script>", r.text, re.DOTALL)
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in inline
    ]
    assert scripts[1:] == hashes
    assert (page == "/docs") == bool(hashes)  # Swagger UI's settings are an inline script
    for values in policy.values():
        assert not [v for v in values if "http" in v or v == "*"], values
    # The JSON API keeps the strictest policy.
    api = client.get("/healthz").headers["content-security-policy"]
    assert api == "default-src 'none'; frame-ancestors 'none'"


def test_the_pages_point_at_assets_under_the_root_path() -> None:
    # Behind a proxy that serves the app under a prefix, the links carry it.
    with TestClient(create_app(make_settings()), root_path="/toxicity") as c:
        for page in PAGES:
            refs = _references(c.get(page).text)
            assert refs and all(ref.startswith("/toxicity/") for ref in refs), refs


def test_only_manifest_files_are_served(client: TestClient) -> None:
    for name in ("MANIFEST.json", "..%2Fdocs.py", "swagger-ui-bundle.js.map", "index.html"):
        r = client.get(f"/docs/assets/{name}")
        assert r.status_code == 404, name
        assert r.json()["error"]["code"] == "not_found"


def test_docs_disabled_serves_no_page_and_no_asset() -> None:
    with TestClient(create_app(make_settings(docs_enabled=False))) as c:
        for path in (*PAGES, "/openapi.json", "/docs/assets/swagger-ui-bundle.js"):
            assert c.get(path).status_code == 404, path


def test_the_wheel_ships_the_assets(tmp_path: Path) -> None:
    # What the Docker image installs (`pip install .`), built from a copy of the checkout.
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(
        ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path / "dist"), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = {Path(n).name: _sha256(zf.read(n)) for n in zf.namelist() if "/docs_assets/" in n}
    expected = {name: entry["sha256"] for name, entry in MANIFEST["files"].items()}
    expected["MANIFEST.json"] = _sha256((ASSETS / "MANIFEST.json").read_bytes())
    assert shipped == expected
