"""The edges of Pora: the ingestion gateway and, later, file connectors, the sink and the feed."""
