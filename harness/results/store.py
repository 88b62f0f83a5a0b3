"""The results file: ``results.csv``, one row per timed repeat, appended cell by cell.

Rows are written with every column of ``harness.results.schema.COLUMNS`` in that order. Each finished
cell's rows go to the file in one write, flushed and fsync'ed, so an interrupted sweep keeps
every cell it finished; ``finished_keys`` tells a resumed sweep which cells to skip and drops the
rows of a cell that was cut off half-written (so nothing is ever duplicated).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from harness.results.schema import COLUMNS, KEY_COLUMNS, SchemaError, conform

CSV_NAME = "results.csv"
PARQUET_NAME = "results.parquet"
FLOAT_KEYS = ("dt", "rtol", "atol")


def _canon_float(v: Any) -> str:
    if v is None or v == "":
        return "nan"
    f = float(v)
    return "nan" if math.isnan(f) else repr(f)


def _canon_threads(v: Any) -> str:
    """``threads`` as a key: "2", or "" when missing (None, "", NaN, pandas.NA)."""
    if v is None or isinstance(v, str) and v == "":
        return ""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return ""  # pandas.NA
    return "" if math.isnan(f) else str(int(f))


def cell_key(fields: Mapping[str, Any]) -> tuple:
    """Canonical identity of a cell from its key columns (a row dict or ``Cell.key_fields()``).

    Floats are compared through ``repr`` (exact: the CSV stores ``repr``), missing values as
    "nan", so a key read back from the file equals the key of the cell that wrote it.
    """
    out = []
    for col in KEY_COLUMNS:
        v = fields.get(col)
        if col == "n":
            out.append(int(float(v)))
        elif col in ("threads", "shards"):  # absent in runs written before they existed
            out.append(_canon_threads(v))
        elif col in FLOAT_KEYS:
            out.append(_canon_float(v))
        else:
            out.append("" if v is None else str(v))
    return tuple(out)


def _format(v: Any) -> str:
    """One CSV field: None -> empty, floats by repr (round-trips exactly), the rest by str."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return repr(v)
    return str(v)


class ResultsWriter:
    """Appends rows to ``results.csv``; creates it with the header if it does not exist."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        columns = list(COLUMNS)
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, newline="") as f:
                header = next(csv.reader(f), [])
            if header != columns:
                raise ValueError(f"{self.path} has other columns than this harness writes "
                                 f"(schema changed?); start a new run instead of resuming")
            _drop_torn_tail(self.path)
            self._file = open(self.path, "ab", buffering=0)
        else:
            self._file = open(self.path, "wb", buffering=0)
            self._write_lines([columns])

    def _write_lines(self, lines: Iterable[list[str]]) -> None:
        """Append ``lines`` whole or not at all: on an OS error (a full disk) what was written
        of them is cut off again, so the file never ends in a half row, and the error propagates."""
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(lines)
        data = buf.getvalue().encode()
        fd = self._file.fileno()
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:  # unbuffered: a write may take only part of the bytes
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass  # then the reader's cut-line rule (last_line_cut) still catches the half row
            raise

    def append(self, rows: list[Mapping[str, Any]]) -> None:
        """Write one cell's rows at once (unknown keys are an error: they would be lost)."""
        for row in rows:
            extra = set(row) - set(COLUMNS)
            if extra:
                raise ValueError(f"row has columns the schema does not know: {sorted(extra)}")
        self._write_lines([[_format(row.get(c)) for c in COLUMNS] for row in rows])

    def close(self) -> None:
        self._file.close()


def last_line_cut(path: Path) -> bool:
    """True when the file's last line has no newline: the writer ends every row with one, so
    such a line was cut by a kill or a full disk mid-write and is not a row."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line that was not finished (the writer was killed mid-write); say so, since
    its cell is then run again."""
    if not last_line_cut(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        f.truncate(data.rfind(b"\n") + 1)
    print(f"warning: {path}: dropped its last line, cut by an interrupted write; that cell runs again",
          file=sys.stderr)


def read_rows(path: Path) -> list[dict[str, str]]:
    """All whole rows of a results CSV as dicts of strings (empty list if the file does not
    exist); a cut last line (``last_line_cut``) is left out, and the file is not changed."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        text = f.read()
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text, newline="")))


def table_sha256(path: Path) -> str:
    """SHA-256 of the results file's bytes: recorded when a session closes, so that ``harness
    check`` can tell a table edited since (harness.results.integrity)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _expected_repeats(row: Mapping[str, str]) -> int | None:
    """The repeats the cell made: ``repeats_done`` (a time-boxed cell may stop early), else
    ``repeats`` (runs written before the time box existed)."""
    try:
        harness = json.loads(row.get("settings") or "{}")["harness"]
        return int(harness.get("repeats_done", harness["repeats"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def cell_complete(rows: list[dict[str, str]]) -> bool:
    """A cell is complete as one non-ok row (repeat -1), or ok rows with repeats 0..R-1 once each."""
    statuses = {r["status"] for r in rows}
    if statuses != {"ok"}:
        # a "skipped" cell (not run for lack of time) is left for --resume to run
        return len(rows) == 1 and rows[0]["status"] not in ("ok", "skipped")
    want = _expected_repeats(rows[0])
    repeats = sorted(int(r["repeat"]) for r in rows)
    return want is not None and repeats == list(range(want))


def finished_keys(path: Path) -> set[tuple]:
    """Keys of the cells ``results.csv`` holds completely; rows of incomplete cells are removed.

    The file is rewritten (to a ``.partial`` then renamed) only when something must be removed.
    """
    path = Path(path)
    rows = read_rows(path)
    by_key: dict[tuple, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        by_key[cell_key(r)].append(r)
    done = {k for k, rs in by_key.items() if cell_complete(rs)}
    if len(done) < len(by_key):
        keep = [r for r in rows if cell_key(r) in done]
        tmp = path.with_name(path.name + ".partial")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(COLUMNS), lineterminator="\n", extrasaction="ignore")
            w.writeheader()
            w.writerows(keep)
        os.replace(tmp, path)
    return done


def read_results(path: Path):
    """The results CSV as a pandas DataFrame with the schema's dtypes (floats read exactly).

    ``path`` is a ``results.csv`` or the run folder holding one.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CSV_NAME
    if last_line_cut(path):
        raise SchemaError(f"{path}: its last line is cut (a write was interrupted); "
                          f"`python -m harness run --resume` drops it and runs that cell again")
    strings = [c for c, t in COLUMNS.items() if t == "string"]
    # pandas >= 3 parses floats exactly by default (and deprecates the option that did it before)
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    df = pd.read_csv(path, dtype={c: str for c in strings}, keep_default_na=False,
                     na_values={c: ["", "nan", "NaN"] for c in COLUMNS if c not in strings}, **exact)
    return conform(df)


def write_parquet(run_dir: Path) -> Path | None:
    """Write ``results.parquet`` beside the CSV if pyarrow imports; returns its path or None."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return None
    run_dir = Path(run_dir)
    df = read_results(run_dir / CSV_NAME)
    target = run_dir / PARQUET_NAME
    tmp = run_dir / (PARQUET_NAME + ".partial")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, target)
    return target
