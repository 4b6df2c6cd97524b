"""The floor every model is compared with: character n-gram TF-IDF + logistic regression."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from model.predictor import META_FILE, Prediction, read_meta

PIPELINE_FILE = "baseline.pkl"


def make_pipeline(seed: int) -> Pipeline:
    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=1, max_features=200_000)),
            ("clf", LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000, random_state=seed)),
        ]
    )


class BaselinePredictor:
    def __init__(self, pipeline: Pipeline, labels: list[str], meta: dict):
        self.pipeline, self.labels, self.info = pipeline, labels, meta
        self.model_id = meta.get("model_id", "baseline")

    @classmethod
    def fit(cls, texts: list[str], labels: list[str], label_names: list[str], seed: int, meta: dict) -> "BaselinePredictor":
        pipeline = make_pipeline(seed).fit(texts, labels)
        return cls(pipeline, label_names, meta)

    @classmethod
    def load(cls, model_dir: Path | str) -> "BaselinePredictor":
        meta = read_meta(model_dir)
        with open(Path(model_dir) / PIPELINE_FILE, "rb") as handle:
            pipeline = pickle.load(handle)  # our own file, written by `save` below
        return cls(pipeline, meta["labels"], meta)

    def save(self, model_dir: Path | str) -> None:
        model_dir = Path(model_dir)
        with open(model_dir / PIPELINE_FILE, "wb") as handle:
            pickle.dump(self.pipeline, handle)
        (model_dir / META_FILE).write_text(json.dumps(self.info, ensure_ascii=False, indent=2), encoding="utf-8")

    def predict(self, texts: list[str]) -> list[Prediction]:
        if not texts:
            return []
        probs = self.pipeline.predict_proba(texts)
        known = list(self.pipeline.classes_)
        full = np.zeros((len(texts), len(self.labels)))
        for j, label in enumerate(known):  # a label absent from training data scores 0
            full[:, self.labels.index(label)] = probs[:, j]
        out = []
        for row in full:
            best = int(row.argmax())
            out.append(Prediction(self.labels[best], float(row[best]), dict(zip(self.labels, map(float, row)))))
        return out
