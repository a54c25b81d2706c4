"""Pora's Prometheus metrics, alert rules and dashboards."""
