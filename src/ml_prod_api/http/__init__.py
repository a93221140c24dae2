"""HTTP layer: routes, schemas, middleware and the error envelope."""
