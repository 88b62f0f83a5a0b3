"""harness/results."""
