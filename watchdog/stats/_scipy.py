"""scipy is optional (`pip install 'model-watchdog[stats]'`); it is imported only when a test needs it."""

from __future__ import annotations

from importlib.util import find_spec
from types import ModuleType

INSTALL_HINT = "pip install 'model-watchdog[stats]'"


def scipy_available() -> bool:
    """For config validation: reject a rule that needs scipy at load time, not at 3 a.m."""
    try:
        return find_spec("scipy") is not None
    except (ImportError, ValueError):
        return False


def scipy_stats(feature: str) -> ModuleType:
    """`scipy.stats`, or an ImportError naming the feature and the extra to install."""
    try:
        from scipy import stats
    except ImportError as exc:
        raise ImportError(f"{feature} needs scipy, which is not installed: {INSTALL_HINT}") from exc
    module: ModuleType = stats
    return module
