"""How one cell is measured, in this process: its lifecycle (execute), the clock, threads,
launch counting, accuracy and the environment fingerprint."""
from harness.measure.clock import time_repeats, time_solve
from harness.measure.execute import Cell, execute_cell

__all__ = ["Cell", "execute_cell", "time_repeats", "time_solve"]
