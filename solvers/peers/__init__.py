"""Peer libraries behind the backend interface, each configured as its own experts would run it.

Backends (registered in ``solvers.registry``): ``diffrax`` (JAX), ``torchdiffeq``, ``torchode``
and ``scipy``. Every setting each one uses is returned by its ``settings(spec)`` and tabulated
in ``docs/fairness.md``. No module here imports its library at import time, so a missing
library only makes its own backend unavailable.
"""
from solvers.peers.diffrax_backend import DiffraxBackend
from solvers.peers.scipy_backend import ScipyBackend
from solvers.peers.torchdiffeq_backend import TorchdiffeqBackend
from solvers.peers.torchode_backend import TorchodeBackend

__all__ = ["DiffraxBackend", "ScipyBackend", "TorchdiffeqBackend", "TorchodeBackend"]
