"""``python -m harness.gpu_profile readme RUN_DIR``: print the README paragraph for a run's results."""
from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "readme":
        print("usage: python -m harness.gpu_profile readme RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[1])
    if not (run_dir / "results.csv").is_file():
        print(f"error: {run_dir} is not a run folder (no results.csv)", file=sys.stderr)
        return 2
    import pandas as pd

    from harness.gpu_profile.section import readme_paragraph

    print(readme_paragraph(pd.read_csv(run_dir / "results.csv")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
