"""Competition suites built from data that ships inside installed packages (no downloads), for developing and
testing competition mode offline: `evolve kaggle prepare --suite dev OUT_DIR` (prepare.py).

SUITES names each suite's competitions (spec.py: a Spec each; one module per family of tasks). Importing
this registry needs neither scikit-learn nor Pillow; preparing needs both (the `kaggle` extra).
"""

from __future__ import annotations

from evolve.competition.suite import classification, images, regression
from evolve.competition.suite.spec import Spec

SUITES: dict[str, list[Spec]] = {
    "dev": [*classification.SPECS, *regression.SPECS, *images.SPECS],
}

__all__ = ["SUITES", "Spec"]
