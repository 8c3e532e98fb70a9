"""Routing-quality evaluation (metrics, cross-validation harness, reports, scenarios)."""
