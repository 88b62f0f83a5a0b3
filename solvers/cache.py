"""Where generated sources and compiled objects are cached on disk (one rule for every builder).

The root is ``$ODEBENCH_CACHE`` or ``.cache/`` at the repository root; each builder has a
sub-folder of its own. A read-only checkout falls back to a private folder in the temporary
directory, so a solve never fails for want of a writable cache.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_root(name: str) -> Path:
    """The cache folder of builder ``name`` (not created)."""
    env = os.environ.get("ODEBENCH_CACHE")
    return (Path(env) if env else Path(__file__).resolve().parents[1] / ".cache") / name


def writable_cache(name: str) -> Path:
    """``cache_root(name)``, created; or a private temporary folder when that is not writable."""
    d = cache_root(name)
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
        return d
    except OSError:  # read-only checkout
        d = Path(tempfile.gettempdir()) / f"odebench-{name}-{os.getuid()}"
        d.mkdir(parents=True, exist_ok=True)
        return d


__all__ = ["cache_root", "writable_cache"]
