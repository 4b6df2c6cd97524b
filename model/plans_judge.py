"""A paragraph read alone: is it from the plans part? One question, answered by a model of its own.

With its heading path the encoder knows a plans paragraph from a review of the same topic (the
heading says 今后工作). Without it only the wording can tell, and two thirds of the encoder's misses
alone in cross-validation were that one question: a plans paragraph called by its topic, or a review
paragraph called `plans` (docs/encoder-recipe.md). The encoder's own `plans` score ranks plans
paragraphs poorly there (average precision 0.57); an n-gram model trained on that question alone,
with balanced classes, ranks them better: the future-tense stock phrases (要, 将, 进一步, 明年) are
n-grams. Its n-grams are of words, as the encoder's tokenizer cuts them, not of characters: the
future 要 is then a word apart from the 主要 and 重要 that reviews are full of (the served P(plans)
alone in cross-validation: average precision 0.75, against 0.67 with characters; docs/encoder-recipe.md,
rounds 8 and 9).

So for a paragraph read without its heading path the served scores become
    P(plans) = the judge's,   P(label) = (1 − P(plans)) × the encoder's share of that label among the rest;
they still sum to one. A paragraph read with its path keeps the encoder's scores, and so does one the
encoder reads as `other` alone: the judge learnt plans part against the committee's other work, and
a review's opening (「20XX年是…之年。一年来，…」) reads to it like the plans part's (「20XX年是…之年。…要…」),
where the encoder's `other` alone is right in 101 or 102 of its 104 or 105 in cross-validation
(three seeds; round 13 of docs/encoder-recipe.md).

Balanced classes are what make the judge useful (they move P(plans) up where the encoder hid it)
and what leave the judged scores less sure than they are right: so the judged scores are then
temperature-scaled (`temperature`, fitted on dev paragraphs read alone), which changes no label and
brings the scores back in line with how often they are right.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.calibration import calibrate
from model.predictor import Prediction, Predictor, is_real

PLANS, REST = "plans", "rest"
OTHER = "other"  # the encoder's label the judge leaves alone (module docstring)
JUDGE_DIR = "plans_judge"  # the judge's folder inside a model folder


def fit_plans_judge(records, seed: int, meta: dict | None = None, sample_weight: list[float] | None = None, tokenizer=None,
                    c: float | None = None):
    """The judge on training records, each read as it would be alone (its text, no path);
    `sample_weight`: each row's loss weight (a starter paragraph's against a real one's), scaled to
    a mean of 1 so that a corpus of one kind trains as unweighted;
    `tokenizer`: the encoder's, for n-grams of its words (none: of characters); `c`: the
    logistic regression's C (none: the n-gram model's)."""
    from model.baseline import C, BaselinePredictor, WordPieces

    if not any(r.label == PLANS for r in records) or all(r.label == PLANS for r in records):
        raise ValueError("the plans judge needs training paragraphs of the plans part and of the others")
    if sample_weight is not None:  # scaled to a mean of 1: the weights set the starter/real balance, C the regularisation
        sample_weight = list(np.asarray(sample_weight, dtype=float) / np.mean(sample_weight))
    return BaselinePredictor.fit([r.text for r in records], [PLANS if r.label == PLANS else REST for r in records],
                                 [PLANS, REST], seed, {"kind": "plans_judge", "model_id": JUDGE_DIR, "labels": [PLANS, REST], **(meta or {})},
                                 sample_weight=sample_weight, words=WordPieces(tokenizer) if tokenizer is not None else None,
                                 c=C if c is None else c)


def judged(prediction: Prediction, plans: float, labels: list[str]) -> Prediction:
    """`prediction` with P(plans) set to `plans` and the other labels sharing the rest in the
    proportions the encoder gave them."""
    others = [label for label in labels if label != PLANS]
    mass = sum(prediction.scores[label] for label in others)
    scores = {label: ((1 - plans) * prediction.scores[label] / mass if mass > 0 else (1 - plans) / len(others))
              for label in others} | {PLANS: plans}
    scores = {label: float(scores[label]) for label in labels}
    best = max(labels, key=scores.__getitem__)
    return Prediction(best, scores[best], scores, prediction.windows, prediction.context)


def is_judged(prediction: Prediction) -> bool:
    """Whether the judge gives this prediction its P(plans): read alone, and not `other` by the encoder."""
    return not prediction.context and prediction.label != OTHER


class PlansJudged:
    """A predictor whose paragraphs read alone take the judge's P(plans), then `temperature` (module docstring)."""

    def __init__(self, encoder: Predictor, judge, temperature: float = 1.0):
        if PLANS not in encoder.labels:
            raise ValueError(f"a plans judge needs a model with the label {PLANS!r}")
        if not (is_real(temperature) and temperature > 0):
            raise ValueError(f"plans_judge temperature must be a positive number, got {temperature!r}")
        self.encoder, self.judge, self.temperature = encoder, judge, float(temperature)
        self.labels, self.info = encoder.labels, encoder.info
        self.model_id = encoder.model_id

    def predict(self, texts: list[str], contexts: list[list[str]] | None = None) -> list[Prediction]:
        return self._predict(texts, contexts)[0]

    def _predict(self, texts: list[str], contexts: list[list[str]] | None) -> tuple[list[Prediction], list[int]]:
        """The predictions, and which of them the judge gave their P(plans) (`is_judged`)."""
        predictions = self.encoder.predict(texts, contexts)
        decided = [i for i, p in enumerate(predictions) if is_judged(p)]
        if decided:
            plans = self.judge.predict([texts[i] for i in decided])
            for i, verdict in zip(decided, plans):
                predictions[i] = calibrate(judged(predictions[i], float(np.clip(verdict.scores[PLANS], 0.0, 1.0)), self.labels),
                                           self.labels, self.temperature)
        return predictions, decided

    def fit_temperature(self, texts: list[str], gold: list[str]) -> float:
        """The temperature of the judged scores, fitted on the dev paragraphs read alone that the judge
        decides (the others keep the encoder's calibration); set and returned."""
        from model.calibration import as_arrays, fit_temperature

        self.temperature = 1.0
        predictions, decided = self._predict(texts, None)
        self.temperature = fit_temperature(*as_arrays([predictions[i] for i in decided], [gold[i] for i in decided], self.labels)) if decided else 1.0
        return self.temperature

    def __getattr__(self, name: str):  # backend, cache and anything else the encoder's predictor has
        return getattr(self.encoder, name)


def judge_entry(info: dict) -> dict | None:
    """The `plans_judge` entry of a model folder's metadata, checked: None when there is none."""
    entry = info.get("plans_judge")
    if entry is None:
        return None
    folder = entry.get("model") if isinstance(entry, dict) else None
    if not isinstance(folder, str) or not folder or folder != Path(folder).name or folder in (".", ".."):
        raise ValueError(f"plans_judge must name a folder inside the model folder, got {entry!r}")
    return entry  # its temperature is checked by PlansJudged, when the folder loads


def with_plans_judge(predictor: Predictor, model_dir: Path | str) -> Predictor:
    """The predictor as the folder serves it: with the judge it stores, when its metadata names one."""
    entry = judge_entry(predictor.info)
    if entry is None:
        return predictor
    from model.baseline import BaselinePredictor, WordPieces

    folder = Path(model_dir) / entry["model"]
    if not folder.is_dir():
        raise ValueError(f"{model_dir}: the plans judge's folder {entry['model']}/ is missing; retrain with `make train`")
    judge = BaselinePredictor.load(folder, words=WordPieces(predictor.tokenizer))  # its words are the encoder's
    if sorted(judge.classes) != sorted([PLANS, REST]):
        raise ValueError(f"{model_dir}/{entry['model']}: not a plans judge (classes {judge.classes})")
    return PlansJudged(predictor, judge, entry.get("temperature", 1.0))
