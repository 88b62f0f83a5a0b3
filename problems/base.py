"""What every problem kind shares: its name, its state and parameter names, its precision and a
content hash of its definition (``ProblemBase``), and the checks of a dtype and an ensemble size."""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

VALID_DTYPES = ("float32", "float64")


def check_dtype(dtype: str) -> str:
    """Return ``dtype`` if it is one the project supports, else raise ``ValueError``."""
    if dtype not in VALID_DTYPES:
        raise ValueError(f"invalid dtype {dtype!r}: choose one of {', '.join(VALID_DTYPES)}")
    return dtype


def row_number(v: Any) -> float:
    """A results-row value as a float, NaN when it is missing or not a number (the kinds'
    ``violation`` checks read rows written as text)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def check_n(n: Any) -> int:
    """Validate an ensemble size: a positive integer (bools and floats are refused)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"invalid ensemble size {n!r}: N must be a positive integer")
    if n <= 0:
        raise ValueError(f"invalid ensemble size {n}: N must be a positive integer")
    return int(n)


class ProblemBase(ABC):
    """The base of every problem kind's class (problems.core.Problem, sde_core.SDEProblem,
    nonlinear_core.NonlinearProblem, pso_core.PSOProblem), each a frozen dataclass.

    A subclass sets ``kind`` (a key of problems.kinds.KINDS) and has the attributes below
    (dataclass fields or properties), a ``_cache`` dict field, and ``fingerprint_blob()``.

    Attributes:
        name: registry key.
        state_names / param_names: names of the state (or unknowns, or search dimensions) and of
            the parameters, in order.
        default_dtype: the precision of the published protocol.
    """

    #: The workload kind (problems.kinds.KINDS) that backends and the harness dispatch on.
    kind: ClassVar[str]
    #: Its accuracy needs a stored float64 reference (problems.reference, shipped in problems/refs).
    stored_reference: ClassVar[bool] = False

    name: str
    state_names: tuple[str, ...]
    param_names: tuple[str, ...]
    default_dtype: str
    _cache: dict

    @property
    def n_states(self) -> int:
        return len(self.state_names)

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    @abstractmethod
    def fingerprint_blob(self) -> str:
        """Every part of the definition that changes results (source code and numbers)."""

    def fingerprint(self) -> str:
        """A content hash of the definition (``fingerprint_blob``)."""
        if "fingerprint" not in self._cache:
            self._cache["fingerprint"] = hashlib.sha256(self.fingerprint_blob().encode()).hexdigest()[:16]
        return self._cache["fingerprint"]
