"""Train the shipped demo intent model (calculate / explain / write / plan + oos) from ``demo_intents.jsonl``.

Run ``python -m tierflow.agents.intents.demo`` to rebuild ``agents/intents/demo_model/``: a head-only model
(the encoder is the base all-MiniLM-L6-v2 package), so the committed weights stay a few hundred KB.
"""

from __future__ import annotations

from pathlib import Path

from tierflow.agents.intents import DEMO_DATA, DEMO_MODEL_DIR
from tierflow.agents.intents.data import file_sha256, load_examples
from tierflow.agents.intents.model import TrainedIntentClassifier
from tierflow.agents.intents.train import TrainConfig, train_classifier

DEMO_CONFIG = TrainConfig(finetune_layers=0, head_epochs=60, batch_size=16, lr_head=1e-2, val_fraction=0.2)


def train_demo_model(
    out_dir: str | Path = DEMO_MODEL_DIR, data: str | Path = DEMO_DATA, progress: bool = False
) -> TrainedIntentClassifier:
    """Train on the demo examples (threshold on a stratified 20% hold-out) and save to ``out_dir``."""
    examples = load_examples(data)
    model = train_classifier(
        examples,
        None,
        DEMO_CONFIG,
        progress=progress,
        source=str(data),
        metadata={"data": Path(data).name, "data_sha256": file_sha256(data), "name": "tierflow-demo-intents"},
    )
    model.save(out_dir)
    return model


if __name__ == "__main__":
    trained = train_demo_model(progress=True)
    print(
        f"saved {DEMO_MODEL_DIR} threshold={trained.threshold:.3f}",
        trained.metadata["val_metrics_at_threshold"],
    )
