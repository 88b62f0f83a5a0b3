"""Markdown building blocks shared by report.md and its appendix: tables and short value texts."""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.measure.accuracy import FIXED_BOUND, ROUNDING_FLOOR, SCALED_BOUND
from harness.report.figures import style


def md_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(md_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def num_text(v: float) -> str:
    return style.format_number(v)


def err_text(v: float) -> str:
    return style.format_number(v, ".2g", "n/a")


def value_range(values: pd.Series, fmt) -> str:
    v = values.dropna()
    if v.empty:
        return "n/a"
    lo, hi = v.min(), v.max()
    return fmt(lo) if lo == hi else f"{fmt(lo)} – {fmt(hi)}"


def settings_text(dt: float, rtol: float, atol: float, mode: str) -> str:
    if mode == "adaptive":
        tol = num_text(rtol) if rtol == atol or not np.isfinite(atol) else f"{num_text(rtol)}/{num_text(atol)}"
        return f"tol {tol}, dt0 {num_text(dt)}" if num_text(dt) else f"tol {tol}"
    return f"dt {num_text(dt)}"


def peer_text(backend: str, variant: str, method: str) -> str:
    text = style.backend_label(backend)
    if variant:
        text += f" [{variant}]"
    return f"{text}, {style.method_label(method)}"


#: float32's machine epsilon: below it a tolerance cannot be reached in float32.
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def accuracy_note(mode: str, rtol: float, dtype: str = "float32") -> str:
    """One line under a table: what its error column measures, the bound it is checked against
    (harness.measure.accuracy) and, for float32 at a tolerance below its rounding, why the error
    sits far above 1."""
    floor = ROUNDING_FLOOR.get(dtype, ROUNDING_FLOOR["float32"])
    if mode == "fixed":
        return (f"*Error:* the largest relative error |u − ref| / |ref| at the end time over every component "
                f"and trajectory, against a float64 reference; checked: at most {max(FIXED_BOUND.get(dtype, 1e-3), floor):g}.")
    text = (f"*Error:* the largest |u − ref| / (atol + rtol·|ref|) at the end time over every component and "
            f"trajectory, in units of the tolerance (1 = exactly the tolerance asked for); checked: at most "
            f"{SCALED_BOUND:g} units (the solver controls each step's local error, and Lorenz amplifies it over the "
            f"interval), or a relative error within {dtype}'s rounding floor {floor:g}.")
    if dtype == "float32" and np.isfinite(rtol) and rtol < FLOAT32_EPS:
        text += (f" At tol {rtol:g} float32 (about 7 digits, epsilon {FLOAT32_EPS:.2g}) cannot reach the "
                 "tolerance at all, so the error sits far above 1 by design; the rounding floor is its check.")
    return text
