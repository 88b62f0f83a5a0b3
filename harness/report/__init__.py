"""harness/report: the Markdown and HTML report of a run, its figures and extension sections."""
from harness.report.markdown import write_report

__all__ = ["write_report"]
