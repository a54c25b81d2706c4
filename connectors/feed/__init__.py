"""The supervisor feed: live alerts in the browser, triage with an audit trail, office-scoped access."""
