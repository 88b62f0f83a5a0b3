"""harness/report/sections."""
