"""HTTP ingestion gateway for hotels, checkpoints, sponsors, agencies and immigration offices."""
