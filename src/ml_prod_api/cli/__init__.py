"""`ml-prod-api serve` and `ml-prod-api score`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ml_prod_api.cli import score, serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-prod-api", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve.register(sub)
    score.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code
