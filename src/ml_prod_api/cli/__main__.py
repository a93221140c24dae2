"""`python -m ml_prod_api.cli`: the same as the `ml-prod-api` command."""

from ml_prod_api.cli import main

raise SystemExit(main())
