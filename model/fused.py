"""Two models, one answer: the encoder's and the n-gram model's probabilities averaged.

The two err differently (the encoder reads meaning, the n-gram model the report's stock phrases),
so a weighted mean of their calibrated probabilities can beat either. The encoder's share is
fitted per mode (with the heading path, alone) on predictions neither model trained on, by the
log-loss of the mixture, from a grid: a few hundred dev paragraphs cannot tune more than that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.predictor import Prediction, Predictor, is_real

GRID = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 11))  # the encoder's share tried
FLOOR = 1e-12


def mix(a: Prediction, b: Prediction, weight: float, labels: list[str]) -> Prediction:
    """`weight` × a's probabilities + (1 − weight) × b's; a's windows and context kept."""
    scores = {label: weight * a.scores[label] + (1 - weight) * b.scores[label] for label in labels}
    best = max(labels, key=scores.__getitem__)
    return Prediction(best, scores[best], scores, a.windows, a.context)


class FusedPredictor:
    """The encoder and the n-gram model behind one predictor: `weight` is the encoder's share for a
    paragraph read with its heading path, `weight_alone` for one read without."""

    def __init__(self, encoder: Predictor, ngram: Predictor, weight: float, weight_alone: float, info: dict | None = None):
        if encoder.labels != ngram.labels:
            raise ValueError(f"the two models have different labels: {encoder.labels} and {ngram.labels}")
        for name, value in (("weight", weight), ("weight_alone", weight_alone)):
            if not (is_real(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"fusion {name} must be a number from 0 to 1, got {value!r}")
        self.encoder, self.ngram = encoder, ngram
        self.weight, self.weight_alone = float(weight), float(weight_alone)
        self.labels = encoder.labels
        self.info = info if info is not None else encoder.info
        self.model_id = self.info.get("model_id", encoder.model_id)

    def predict(self, texts: list[str], contexts: list[list[str]] | None = None) -> list[Prediction]:
        pairs = zip(self.encoder.predict(texts, contexts), self.ngram.predict(texts, contexts))
        return [mix(a, b, self.weight if a.context else self.weight_alone, self.labels) for a, b in pairs]

    def __getattr__(self, name: str):  # backend, cache and anything else the encoder's predictor has
        return getattr(self.encoder, name)


def fusion_entry(info: dict) -> dict | None:
    """The `fusion` entry of a model folder's metadata, checked: None when there is none; a
    ValueError naming what is wrong otherwise (the folder is then refused at load, never half-served)."""
    entry = info.get("fusion")
    if entry is None:
        return None
    if not isinstance(entry, dict) or set(entry) != {"model", "weight", "weight_alone"}:
        raise ValueError(f"fusion entry must have exactly model, weight and weight_alone, got {entry!r}")
    folder = entry["model"]
    if not isinstance(folder, str) or not folder or folder != Path(folder).name or folder in (".", ".."):
        raise ValueError(f"fusion model must be the name of a folder inside the model folder, got {folder!r}")
    return entry


def with_fusion(encoder: Predictor, model_dir: Path | str) -> Predictor:
    """The encoder as the folder serves it: fused with the n-gram model it stores, when its
    metadata has a `fusion` entry (weights fitted at training time), else the encoder alone."""
    entry = fusion_entry(encoder.info)
    if entry is None:
        return encoder
    from model.baseline import BaselinePredictor

    ngram = BaselinePredictor.load(Path(model_dir) / entry["model"])
    return FusedPredictor(encoder, ngram, entry["weight"], entry["weight_alone"], info=encoder.info)


def log_loss(predictions: list[Prediction], gold: list[str]) -> float:
    return float(-np.mean([np.log(max(p.scores[g], FLOOR)) for p, g in zip(predictions, gold)]))


def fit_weight(encoder: list[Prediction], ngram: list[Prediction], gold: list[str], labels: list[str]) -> float:
    """The encoder's share (from GRID) whose mixture has the lowest log-loss on `gold`; ties go to
    the larger share, and with no data the encoder alone (1.0)."""
    if not gold:
        return 1.0
    losses = [(log_loss([mix(a, b, w, labels) for a, b in zip(encoder, ngram)], gold), -w) for w in GRID]
    return -min(losses)[1]


def fit_fusion(encoder: Predictor, ngram: Predictor, texts: list[str], paths: list[list[str]], gold: list[str]) -> dict:
    """Both weights fitted on paragraphs neither model trained on (dev): {"weight", "weight_alone"}."""
    fitted = {}
    for key, contexts in (("weight", paths), ("weight_alone", None)):
        fitted[key] = fit_weight(encoder.predict(texts, contexts), ngram.predict(texts, contexts), gold, encoder.labels)
    return fitted
