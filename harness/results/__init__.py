"""harness/results: the results schema, reading results, and the cell table every reader shares."""
from harness.results.cells import cell_table
from harness.results.schema import COLUMNS, KEY_COLUMNS
from harness.results.store import read_results

__all__ = ["COLUMNS", "KEY_COLUMNS", "cell_table", "read_results"]
