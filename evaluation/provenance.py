"""What a result was made with: the package versions a run record and a report carry (enough to rerun it).

Here, below the runtime, because both the engine's run record and the Compare report write them.
"""
from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("torch", "torchvision", "timm", "numpy", "scipy", "streamlit", "plotly")


def package_versions() -> dict[str, str]:
    """Python's version and each installed package's (missing ones left out)."""
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out
