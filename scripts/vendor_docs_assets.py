"""Fetch the docs pages' scripts and styles from npm into the package, and write their manifest.

    python -m scripts.vendor_docs_assets                  # the versions pinned below, via npm
    python -m scripts.vendor_docs_assets --tarballs DIR   # from tarballs `npm pack` left in DIR
    python -m scripts.vendor_docs_assets --check          # only check the files and the manifest

`/docs` (Swagger UI) and `/redoc` (ReDoc) are served from `src/ml_prod_api/http/docs_assets/`,
never from a CDN (see `ml_prod_api/http/docs.py`). The files come from the packages' own npm
tarballs, fetched with `npm pack`, which checks each tarball against the registry's integrity
hash. `MANIFEST.json` records each package's version and tarball integrity (the registry's
`dist.integrity`, as `npm view PACKAGE@VERSION dist.integrity` shows it), and each file's source,
size and SHA-256, which `tests/test_docs_assets.py` checks. Source maps are left out. To upgrade,
change a version below, run this, and commit the files with the manifest.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "src" / "ml_prod_api" / "http" / "docs_assets"
MANIFEST = ASSETS / "MANIFEST.json"

# The majors FastAPI's own docs pages load from its CDN default (swagger-ui-dist@5, redoc@2).
PACKAGES = {"swagger-ui-dist": "5.35.0", "redoc": "2.5.4"}
# Served name -> (package, path inside its tarball). The licences go with the code they cover.
FILES = {
    "swagger-ui-bundle.js": ("swagger-ui-dist", "package/swagger-ui-bundle.js"),
    "swagger-ui-bundle.js.LICENSE.txt": (
        "swagger-ui-dist",
        "package/swagger-ui-bundle.js.LICENSE.txt",
    ),
    "swagger-ui.css": ("swagger-ui-dist", "package/swagger-ui.css"),
    "favicon-32x32.png": ("swagger-ui-dist", "package/favicon-32x32.png"),
    "swagger-ui-dist.LICENSE.txt": ("swagger-ui-dist", "package/LICENSE"),
    "swagger-ui-dist.NOTICE.txt": ("swagger-ui-dist", "package/NOTICE"),
    "redoc.standalone.js": ("redoc", "package/bundles/redoc.standalone.js"),
    "redoc.standalone.js.LICENSE.txt": ("redoc", "package/bundles/redoc.standalone.js.LICENSE.txt"),
    "redoc.LICENSE.txt": ("redoc", "package/LICENSE"),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check() -> list[str]:
    """What differs between the files and the manifest (empty: they match)."""
    manifest = json.loads(MANIFEST.read_text())
    problems = []
    for name, entry in manifest["files"].items():
        path = ASSETS / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256(path) != entry["sha256"] or path.stat().st_size != entry["bytes"]:
            problems.append(f"{name}: differs from the manifest")
    extra = {p.name for p in ASSETS.iterdir()} - set(manifest["files"]) - {MANIFEST.name}
    problems += [f"{name}: not in the manifest" for name in sorted(extra)]
    return problems


def integrity(tarball: Path) -> str:
    """npm's integrity string of a tarball (Subresource Integrity format, SHA-512)."""
    return "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()


def npm_pack(package: str, version: str, dest: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm not found (or give --tarballs)")
    out = subprocess.run(
        [npm, "pack", "--json", f"{package}@{version}", "--pack-destination", str(dest)],
        check=True,
        capture_output=True,
        text=True,
    )
    info = json.loads(out.stdout)[0]
    tarball = dest / info["filename"]
    assert integrity(tarball) == info["integrity"], f"{tarball.name}: integrity mismatch"
    return tarball


def fetch(tarballs: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        packages = {}
        for package, version in PACKAGES.items():
            tarball = (
                tarballs / f"{package}-{version}.tgz"
                if tarballs is not None
                else npm_pack(package, version, work)
            )
            with tarfile.open(tarball) as tar:
                tar.extractall(work / package, filter="data")
            packages[package] = {"version": version, "integrity": integrity(tarball)}
        ASSETS.mkdir(parents=True, exist_ok=True)
        for stale in ASSETS.glob("*"):
            stale.unlink()
        files = {}
        for name, (package, inner) in FILES.items():
            target = ASSETS / name
            shutil.copyfile(work / package / inner, target)
            files[name] = {
                "package": package,
                "source": inner,
                "bytes": target.stat().st_size,
                "sha256": sha256(target),
            }
    MANIFEST.write_text(json.dumps({"packages": packages, "files": files}, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--check", action="store_true", help="only compare the files to the manifest")
    p.add_argument("--tarballs", type=Path, help="a folder with the tarballs, from `npm pack`")
    args = p.parse_args(argv)
    if not args.check:
        fetch(args.tarballs)
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
