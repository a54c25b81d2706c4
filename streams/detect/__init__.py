"""The detectors: rules over the event streams, in event time (see RULES.md beside this file)."""
