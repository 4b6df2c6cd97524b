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
    return json.loads(path.read_text(encoding="utf-8"))


def load_predictor(model_dir: Path | str, **options) -> Predictor:
    """Load whichever kind of model the directory holds, its scores calibrated by the temperatures
    fitted at training time (model/calibration.py) when the folder stores them, and fused with the
    n-gram model it stores when its metadata says so (model/fused.py). Every stored value is checked
    here (ValueError naming it), so a broken folder is refused at load, never inside a request."""
    from model.calibration import calibrated
    from model.reports import Combiner

    kind = read_meta(model_dir)["kind"]
    if kind == "baseline":
        from model.baseline import BaselinePredictor

        predictor = calibrated(BaselinePredictor.load(model_dir))
    elif kind == "bert":
        from model.backends import load_bert_predictor  # torch or ONNX, by the BACKEND setting
        from model.fused import with_fusion

        predictor = with_fusion(calibrated(load_bert_predictor(model_dir, **options)), model_dir)
    else:
        raise ValueError(f"{model_dir}: unknown model kind {kind!r}")
    Combiner.from_meta(predictor.info)  # the whole-report weights, checked now
    return predictor
