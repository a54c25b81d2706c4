"""The ClickHouse sink: every event topic, the alerts and the alert actions, in tables for analysis."""
