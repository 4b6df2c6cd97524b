"""Temperature scaling: one number T, fitted on the dev split, so that a score of 0.8 is right
about 80% of the time.

softmax(z / T) ∝ p^(1/T), so T is applied to a model's final probabilities (p_i^(1/T) / Σ_j p_j^(1/T))
and the model itself is left alone. T > 1 softens an over-confident model, T < 1 sharpens an
unsure one; the order of the labels, and so every label, never changes. Calibration is measured
by the expected calibration error (ECE) over equal-width confidence bins.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from model.predictor import Prediction, Predictor, is_real

BINS = 10  # equal-width confidence bins for ECE and the reliability diagram
# The search range. Bounded well inside (0, ∞): a small dev split the model gets all right drives
# the NLL-optimal T towards 0 (measured in cross-validation: folds fitted T = 0.05, the old bound,
# and served scores of 1.000 on wrong labels), and such a T says nothing about unseen reports.
T_RANGE = (0.25, 4.0)
FLOOR = 1e-12  # probabilities are clipped here before the logarithm


def scale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Rows of probabilities raised to 1/T and renormalised (in log space, so nothing underflows)."""
    logits = np.log(np.clip(np.asarray(probs, dtype=float), FLOOR, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=-1, keepdims=True)


def nll(probs: np.ndarray, gold: np.ndarray) -> float:
    """Mean negative log-likelihood of the gold labels (indices)."""
    picked = np.asarray(probs)[np.arange(len(gold)), gold]
    return float(-np.log(np.clip(picked, FLOOR, 1.0)).mean())


def fit_temperature(probs: np.ndarray, gold: np.ndarray) -> float:
    """The T that minimises the NLL of `gold` under scale(probs, T). The NLL is convex in 1/T, so a
    bounded search over log T finds the one minimum. No data: T = 1 (no change)."""
    from scipy.optimize import minimize_scalar

    if len(gold) == 0:
        return 1.0
    low, high = (math.log(t) for t in T_RANGE)
    found = minimize_scalar(lambda log_t: nll(scale(probs, math.exp(log_t)), gold), bounds=(low, high),
                            method="bounded", options={"xatol": 1e-4})
    return round(math.exp(found.x), 4)


def reliability(probs: np.ndarray, gold: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per equal-width bin of confidence (the top probability): how many, mean confidence, accuracy."""
    probs = np.asarray(probs)
    return binned(probs.max(axis=1), probs.argmax(axis=1) == gold, bins)


def binned(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> list[dict]:
    """Rows (a score and whether its label was right) per equal-width bin of the score."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=bool)
    # Bin i holds (i/bins, (i+1)/bins]; a confidence of exactly 0 goes to the first bin.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    out = []
    for i in range(bins):
        members = which == i
        count = int(members.sum())
        out.append({"low": i / bins, "high": (i + 1) / bins, "count": count,
                    "confidence": float(confidence[members].mean()) if count else None,
                    "accuracy": float(correct[members].mean()) if count else None})
    return out


def ece(probs: np.ndarray, gold: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: Σ over bins of (share of rows) × |accuracy − mean confidence|."""
    return expected_error(reliability(probs, gold, bins))


def prediction_ece(predictions: list[Prediction], gold: list[str], bins: int = BINS) -> float:
    """ECE of predictions as given: each one's score against whether its label is the gold one
    (whole-report predictions included, whose label is their section's)."""
    return expected_error(binned([p.score for p in predictions], [p.label == g for p, g in zip(predictions, gold)], bins))


def expected_error(bins: list[dict]) -> float:
    total = sum(b["count"] for b in bins)
    if total == 0:
        return 0.0
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


def as_arrays(predictions: list[Prediction], gold: list[str], labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and gold labels as a probability matrix (rows × labels) and label indices."""
    probs = np.array([[p.scores[label] for label in labels] for p in predictions], dtype=float).reshape(len(predictions), len(labels))
    return probs, np.array([labels.index(g) for g in gold], dtype=int)


def draw_reliability(before: np.ndarray, after: np.ndarray, gold: np.ndarray, temperature: float, path: Path) -> None:
    """A reliability diagram: accuracy against confidence per bin, before and after scaling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), sharey=True)
    for ax, probs, title in ((axes[0], before, "before (T = 1)"), (axes[1], after, f"after (T = {temperature:.2f})")):
        bins = reliability(probs, gold)
        centres = [(b["low"] + b["high"]) / 2 for b in bins]
        ax.bar(centres, [b["accuracy"] or 0 for b in bins], width=1 / BINS, edgecolor="#333", color="#6a9fd8", label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="#999", label="perfect calibration")
        ax.scatter([c for c, b in zip(centres, bins) if b["count"]], [b["confidence"] for b in bins if b["count"]],
                   color="#d8572a", zorder=3, s=18, label="mean confidence")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability)",
               title=f"{title}: ECE {ece(probs, gold):.3f}, n = {len(gold)}")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def calibration_report(raw: list[Prediction], gold: list[str], labels: list[str], temperature: float,
                       diagram: Path | None = None) -> dict:
    """ECE and NLL of raw predictions before and after scaling (on held-out data), and the diagram."""
    probs, target = as_arrays(raw, gold, labels)
    after = scale(probs, temperature)
    report = {"temperature": temperature, "fitted_on": "dev", "bins": BINS, "paragraphs": len(gold),
              "ece_before": round(ece(probs, target), 4), "ece_after": round(ece(after, target), 4),
              "nll_before": round(nll(probs, target), 4) if len(gold) else None,
              "nll_after": round(nll(after, target), 4) if len(gold) else None}
    if diagram is not None and len(gold):
        draw_reliability(probs, after, target, temperature, diagram)
        report["diagram"] = diagram.name
    return report


def calibrate(prediction: Prediction, labels: list[str], temperature: float) -> Prediction:
    """The same prediction with scaled scores: its label kept, its score the label's new probability."""
    scaled = scale(np.array([[prediction.scores[label] for label in labels]]), temperature)[0]
    scores = {label: float(value) for label, value in zip(labels, scaled)}
    return replace(prediction, score=scores[prediction.label], scores=scores)


class Calibrated:
    """A predictor whose scores are temperature-scaled, by the temperature of the mode each
    prediction was made in: `temperature` for a paragraph read with its heading path,
    `temperature_alone` for one read without (a model is surer, and wrong more often, alone).
    Everything else is the wrapped predictor's."""

    def __init__(self, predictor: Predictor, temperature: float, temperature_alone: float | None = None):
        self.inner, self.temperature = predictor, temperature
        self.temperature_alone = temperature if temperature_alone is None else temperature_alone

    def predict(self, texts: list[str], contexts: list[list[str]] | None = None) -> list[Prediction]:
        return [calibrate(p, self.inner.labels, self.temperature if p.context else self.temperature_alone)
                for p in self.inner.predict(texts, contexts)]

    def __getattr__(self, name: str):  # labels, model_id, info and anything a backend adds
        return getattr(self.inner, name)


def stored_temperatures(info: dict) -> tuple[float, float] | None:
    """(with the heading path, alone) from a model's metadata (`temperature`, `temperature_alone`);
    a folder from before per-mode calibration uses its one temperature for both; None: none stored."""
    for key in ("temperature", "temperature_alone"):  # checked at load: a bad value never reaches a division
        value = info.get(key)
        if value is not None and not (is_real(value) and value > 0):
            raise ValueError(f"{key} must be a positive number, got {value!r}")
    if info.get("temperature") is None:
        return None
    alone = info.get("temperature_alone")
    return float(info["temperature"]), float(info["temperature"] if alone is None else alone)


def calibrated(predictor: Predictor, temperature: float | None = None, temperature_alone: float | None = None) -> Predictor:
    """`predictor` scaled by `temperature` (with a heading path) and `temperature_alone` (without;
    default: the same), both by default from its metadata; returned as it is when there is none
    (models trained before calibration) or both are 1."""
    if temperature is None:
        stored = stored_temperatures(getattr(predictor, "info", None) or {})
        if stored is None:
            return predictor
        temperature, temperature_alone = stored
    temperature_alone = temperature if temperature_alone is None else temperature_alone
    if float(temperature) == float(temperature_alone) == 1.0:
        return predictor
    return Calibrated(predictor, float(temperature), float(temperature_alone))


def is_uncertain(score: float, min_score: float | None) -> bool | None:
    """The abstention flag: True below `min_score`; None when no threshold was asked for."""
    return None if min_score is None else score < min_score
