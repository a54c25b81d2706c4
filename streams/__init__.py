"""Pora stream processing: settings, topics, the command line and (later) the detectors."""
