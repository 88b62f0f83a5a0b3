"""``python -m harness.gpu_profile {readme,sizes,cpu-peak}``: see ``command``."""
import sys

from harness.gpu_profile.command import main

if __name__ == "__main__":
    sys.exit(main())
