"""Markdown building blocks shared by report.md and its appendix: tables and short value texts."""
from __future__ import annotations

import numpy as np
import pandas as pd

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
