"""Reading run folders for the report: the validated results table, the environment, a Run.

Every reader of a run (the report, its companions, the README generator) goes through
:func:`read_run`, so each run is read and validated once and its cell table computed once.
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.errors import UsageError
from harness.results.cells import cell_table
from harness.results.schema import COLUMNS, SchemaError, validate
from harness.results.store import last_line_cut
from harness.run.suites import resolve_suite_path

RESULTS_FILE = "results.csv"
ENVIRONMENT_FILE = "environment.json"

#: Where committed runs live: a suite's ``companions`` names folders here.
RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"


@dataclass(frozen=True)
class Run:
    """One run read once: its folder, its validated results table and its cell table."""

    path: Path
    results: pd.DataFrame
    cells: pd.DataFrame


def suite_companions(run_dir: Path, results_dir: Path = RESULTS_DIR) -> tuple[Path, ...]:
    """The companion runs the run's suite file names (``companions = [...]``, folder names under
    ``results_dir``); () when the run records no suite, the suite file is gone or names none."""
    env, _ = load_environment(run_dir)
    name = (env.get("suite") or {}).get("name") if isinstance(env.get("suite"), dict) else None
    if not name:
        return ()
    try:
        data = tomllib.loads(resolve_suite_path(name).read_text(encoding="utf-8"))
    except (UsageError, tomllib.TOMLDecodeError, OSError):
        return ()
    return tuple(Path(results_dir) / c for c in data.get("companions", []))


def read_run(run_dir: Path) -> Run:
    """The run in ``run_dir`` (raises SchemaError as :func:`load_results`)."""
    results = load_results(run_dir)
    return Run(Path(run_dir), results, cell_table(results))


def load_results(run_dir: Path) -> pd.DataFrame:
    """``run_dir/results.csv`` read and validated.

    Raises:
        SchemaError (a ValueError): the folder or file is missing, the file is empty or not a
            CSV, or the table fails :func:`harness.results.schema.validate`; the message is one line.
    """
    run_dir = Path(run_dir)
    path = run_dir / RESULTS_FILE
    if not run_dir.is_dir():
        raise SchemaError(f"run folder {run_dir} does not exist")
    if not path.is_file():
        raise SchemaError(f"{path} is missing: a run folder holds {RESULTS_FILE} (write one with a run first)")
    if last_line_cut(path):  # a cut row is not a repeat (harness.results.store)
        raise SchemaError(f"{path}: its last line is cut (a write was interrupted); "
                          f"`python -m harness run --resume` drops it and runs that cell again")
    strings = [c for c, t in COLUMNS.items() if t == "string"]
    # Text read as written ("None" or "NA" stay text); only numeric columns have missing values.
    # Floats are parsed exactly (the default from pandas 3), so key columns match as written.
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    try:
        df = pd.read_csv(path, dtype={c: str for c in strings}, keep_default_na=False,
                         na_values={c: ["", "nan", "NaN"] for c in COLUMNS if c not in strings}, **exact)
    except pd.errors.EmptyDataError:
        raise SchemaError(f"{path} is empty: no header and no rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SchemaError(f"{path} is not a readable results CSV: {first}") from None
    try:
        return validate(df)
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from None


def load_environment(run_dir: Path) -> tuple[dict, str]:
    """``(fingerprint, note)``: the parsed environment.json (or {}), and "" or why it is absent."""
    path = Path(run_dir) / ENVIRONMENT_FILE
    if not path.is_file():
        return {}, f"{ENVIRONMENT_FILE} is missing from the run folder"
    try:
        env = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        return {}, f"{ENVIRONMENT_FILE} could not be read ({type(exc).__name__}: {exc})"
    if not isinstance(env, dict):
        return {}, f"{ENVIRONMENT_FILE} does not hold a JSON object"
    return env, ""


def cpu_words(run_dir: Path) -> str:
    """The CPU a run was measured on, as its fingerprint names it: "znver3, avx2"."""
    env, _ = load_environment(run_dir)
    vec = env.get("cpu_vector") if isinstance(env.get("cpu_vector"), dict) else {}
    return f"{vec.get('cpu_name') or 'CPU not recorded'}, {vec.get('isa') or 'ISA not recorded'}"
