"""Helpers shared by the test suite and the reliability drills (`scripts/reliability/`): a fake
provider, real server and Redis processes on loopback ports, and broken model artifacts."""
