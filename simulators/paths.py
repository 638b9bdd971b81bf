"""Where the framework's files are: the shipped prosumer spec files and the on-disk cache."""

import os
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "scenarios" / "data"
"""the shipped prosumer spec files"""


def cache_root():
    """Root of the on-disk caches (profiles, converted LLMs, atom index, accepted experts):
    ``$P2P_COSIM_CACHE``, default ``~/.cache/p2p-cosim``."""
    return Path(os.environ.get("P2P_COSIM_CACHE") or Path.home() / ".cache" / "p2p-cosim")
