"""Point the benchmarks at the offline mirror beside the checkout, before Hugging Face is imported.

Without this a machine with no network spends minutes on Hub retries before falling back.
"""

from __future__ import annotations

import os
from pathlib import Path


def use_local_mirror() -> None:
    mirror = Path(__file__).resolve().parents[1].parent / "shared"
    if "PEFTBENCH_MIRROR" not in os.environ and mirror.is_dir():
        os.environ["PEFTBENCH_MIRROR"] = str(mirror)
    if "PEFTBENCH_MIRROR" in os.environ:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
