"""Thin Lightning callbacks over lcross, installed as ``lcross.callbacks`` (see pyproject.toml)."""
