"""Intent classification on all-MiniLM-L6-v2 sentence embeddings with a small torch head.

``load_default_classifier()`` returns the demo model shipped in ``demo_model/`` (intents
calculate / explain / write / plan, plus out-of-scope); ``train_classifier`` trains new ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tierflow.agents.intents.errors import IntentDataError, IntentModelError

if TYPE_CHECKING:
    from tierflow.agents.intents.model import TrainedIntentClassifier

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_DATA = PACKAGE_DIR / "demo_intents.jsonl"
DEMO_MODEL_DIR = PACKAGE_DIR / "demo_model"
DEMO_INTENTS = ("calculate", "explain", "write", "plan")

__all__ = [
    "DEMO_DATA",
    "DEMO_INTENTS",
    "DEMO_MODEL_DIR",
    "IntentDataError",
    "IntentModelError",
    "load_default_classifier",
]


def load_default_classifier(precision: str = "fp32") -> TrainedIntentClassifier:
    """The shipped demo classifier (head weights in ``demo_model/``, encoder from the base package)."""
    from tierflow.agents.intents.model import TrainedIntentClassifier

    return TrainedIntentClassifier.load(DEMO_MODEL_DIR, precision=precision)
