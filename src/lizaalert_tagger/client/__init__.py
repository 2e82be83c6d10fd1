"""The HTTP client, tokens, the run folder, the field report and the tagctl command line (no torch)."""
