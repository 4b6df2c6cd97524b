"""The prediction interface every model kind serves: the service, the CLI and evaluation use it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

META_FILE = "renda_model.json"  # written into every model directory: kind, labels, provenance


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float
    scores: dict[str, float]
    windows: int = 1
    context: bool = False  # a non-empty heading path was read with the paragraph

    def top(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.scores.items(), key=lambda kv: -kv[1])[:k]


class Predictor(Protocol):
    labels: list[str]
    model_id: str
    info: dict

    def predict(self, texts: list[str], contexts: list[list[str]] | None = None) -> list[Prediction]:
        """One prediction per text; `contexts[i]` is text i's heading path ([] = unknown)."""
        ...


def is_real(value) -> bool:
    """A finite int or float, and not a bool: what a number stored in a model folder must be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_meta(model_dir: Path | str) -> dict:
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: not a trained model directory (no {META_FILE}); run `make train` or `make baseline`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:  # a broken folder names itself, whoever reads it (CLI, service, export)
        raise ValueError(f"{model_dir}: {META_FILE} is not valid JSON ({error}); retrain with `make train`") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{model_dir}: {META_FILE} must hold a JSON object, not {type(meta).__name__}")
    return meta
