"""``python -m harness refs``: compute, on any CPU, every float64 reference a suite needs and
write it under ``problems/refs/`` (committed, content-hashed: problems/reference.py), so a GPU
box reads them instead of running SciPy inside its lent time."""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Iterable

from problems.registry import get_problem
from problems.reference import SHIPPED_DIR, _default_cache_dir, is_shipped, reference, reference_file_name


def needed(cells: Iterable) -> list[tuple]:
    """The distinct (problem, N, dtype, saveat) of ``cells`` whose problem keeps a stored
    reference (``Problem.stored_reference``), in first-seen order."""
    out: dict[tuple, None] = {}
    for c in cells:
        s = c.spec
        if s.prob.stored_reference:
            out[(s.problem, s.n, s.dtype, s.saveat)] = None
    return list(out)


def missing(cells: Iterable) -> list[str]:
    """Labels of the references ``cells`` need that are not shipped."""
    return [f"{p} N={n} {d}" + (f" saveat={sv}" if sv else "")
            for p, n, d, sv in needed(cells) if not is_shipped(get_problem(p), n, d, sv)]


def write_shipped(cells: Iterable, out_dir: Path = SHIPPED_DIR) -> list[Path]:
    """Compute (or copy from the local cache) every reference ``cells`` need into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for p, n, dtype, saveat in needed(cells):
        prob = get_problem(p)
        name = reference_file_name(prob, n, dtype, saveat)
        started = time.monotonic()
        cached = _default_cache_dir() / name
        if cached.is_file() and not (out_dir / name).is_file():
            shutil.copyfile(cached, out_dir / name)  # computed here before, same content hash
        reference(prob, n, dtype, saveat, cache_dir=out_dir)  # shipped first, else computes into out_dir
        print(f"{name}: {p} N={n} {dtype} ({time.monotonic() - started:.1f} s)", file=sys.stderr)
        written.append(out_dir / name)
    return written
