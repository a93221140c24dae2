"""Training and evaluation scripts, kept apart from the runtime dependencies."""
