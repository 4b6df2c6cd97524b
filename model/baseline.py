"""The floor every model is compared with: character n-gram TF-IDF + logistic regression.

It reads the same input as the encoder: the paragraph and its heading path, the path's n-grams
kept apart from the text's (marked `§`), and the same context dropout in training. The fitted
model is saved as data, never as a pickle: the vocabulary as JSON, the IDF weights and the
coefficients as a NumPy archive read with `allow_pickle=False`. Opening a model folder that
someone sent never runs code from it. Prediction is the same arithmetic after fit and after load,
written out in NumPy (TfidfVectorizer's sublinear tf × idf, L2 norm, then the linear model), so
serving one never imports scikit-learn and SciPy (about 140 MB of a server's memory).

The same machinery can count words instead of characters (`WordPieces`: the words an encoder's
tokenizer cuts); the plans judge does (model/plans_judge.py).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np

from model.context import contexts_or_empty, drop_context, path_text
from model.predictor import META_FILE, Prediction, read_meta

VOCABULARY_FILE = "vocabulary.json"
WEIGHTS_FILE = "weights.npz"
_MARK = "\x1e"  # joins path and text into one document for the analyser; never in report text
NGRAMS = (1, 3)
C = 10.0  # the logistic regression's inverse regularisation (the judge's, searched in docs/encoder-recipe.md round 10)
CHARS, WORDS = "chars", "words"  # what the n-grams are made of (`units` in the metadata; chars when absent)


def spans(units):
    """Every run of NGRAMS[0] to NGRAMS[1] consecutive units (characters of a string, or words of a list)."""
    return (units[i: i + n] for n in range(NGRAMS[0], NGRAMS[1] + 1) for i in range(len(units) - n + 1))


def char_ngrams(text: str) -> list[str]:
    return list(spans(" ".join(text.lower().split())))


class WordPieces:
    """A text cut into words as an encoder's tokenizer cuts it (e5's SentencePiece: 坚持 党的 领导), for
    n-grams of words: 要 the future marker then stands apart from 主要 and 重要, which character
    n-grams cannot tell from it. Word n-grams are joined by a space, which no piece holds."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> list[str]:
        # not verbose: a paragraph longer than the encoder reads is no error here, the judge reads all of it
        pieces = self.tokenizer.tokenize(text, verbose=False)
        return [word for word in (piece.lstrip("▁") for piece in pieces) if word.strip()]

    def ngrams(self, text: str) -> list[str]:
        return [" ".join(run) for run in spans(self(text))]


def analyser(words: WordPieces | None = None):
    """The n-grams of a document: 1-3-grams of the text (characters, or `words`), and of the path marked apart."""
    grams = char_ngrams if words is None else words.ngrams

    def analyse(document: str) -> list[str]:
        path, _, text = document.rpartition(_MARK)
        return grams(text) + ["§" + gram for gram in grams(path)]

    return analyse


analyse = analyser()  # characters: the n-gram model's units


def documents(texts: list[str], paths: list[str]) -> list[str]:
    return [f"{path}{_MARK}{text}" for path, text in zip(paths, texts)]


class BaselinePredictor:
    def __init__(self, vocabulary: dict[str, int], idf: np.ndarray, coef: np.ndarray, intercept: np.ndarray,
                 classes: list[str], labels: list[str], meta: dict, words: WordPieces | None = None):
        self.vocabulary = vocabulary
        self.idf, self.coef, self.intercept, self.classes = idf, coef, intercept, classes
        self.labels, self.info = labels, meta
        self.model_id = meta.get("model_id", "baseline")
        self.analyse = analyser(words)

    @classmethod
    def fit(cls, texts: list[str], labels: list[str], label_names: list[str], seed: int, meta: dict,
            contexts: list[list[str]] | None = None, context_dropout: float = 0.0,
            sample_weight: list[float] | None = None, words: WordPieces | None = None, c: float = C) -> "BaselinePredictor":
        """`words`: n-grams of the words a tokenizer cuts instead of characters (`units` in the
        metadata: loading such a model needs the same tokenizer); `c`: the logistic regression's C."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        paths = drop_context([path_text(path) for path in contexts_or_empty(contexts, len(texts))], context_dropout, random.Random(seed))
        tfidf = TfidfVectorizer(analyzer=analyser(words), sublinear_tf=True, min_df=1, max_features=200_000)
        features = tfidf.fit_transform(documents(texts, paths))
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed).fit(features, labels, sample_weight=sample_weight)
        vocabulary = {term: int(i) for term, i in tfidf.vocabulary_.items()}
        meta = {**meta, "context_dropout": context_dropout, **({"units": WORDS} if words else {})}
        return cls(vocabulary, tfidf.idf_, clf.coef_, clf.intercept_, [str(k) for k in clf.classes_], label_names, meta, words)

    @classmethod
    def load(cls, model_dir: Path | str, meta: dict | None = None, words: WordPieces | None = None) -> "BaselinePredictor":
        """`words`: the tokenizer's cut, for a model of word n-grams (its `units`); unused by one of characters."""
        model_dir = Path(model_dir)
        meta = meta or read_meta(model_dir)
        units = meta.get("units", CHARS)
        if units not in (CHARS, WORDS):
            raise ValueError(f"{model_dir}: unknown n-gram units {units!r}; expected {CHARS!r} or {WORDS!r}")
        if units == WORDS and words is None:
            raise ValueError(f"{model_dir}: an n-gram model of words needs its encoder's tokenizer to load")
        for name in (VOCABULARY_FILE, WEIGHTS_FILE):
            if not (model_dir / name).is_file():
                raise FileNotFoundError(f"{model_dir}: baseline model without {name}; retrain it with `make baseline`")
        vocabulary = json.loads((model_dir / VOCABULARY_FILE).read_text(encoding="utf-8"))
        with np.load(model_dir / WEIGHTS_FILE, allow_pickle=False) as weights:  # data only, never code
            idf, coef, intercept = weights["idf"], weights["coef"], weights["intercept"]
            classes = [str(c) for c in weights["classes"]]
        if (not isinstance(vocabulary, dict) or coef.shape != (1 if len(classes) == 2 else len(classes), len(idf))
                or not all(isinstance(i, int) and 0 <= i < len(idf) for i in vocabulary.values())):
            raise ValueError(f"{model_dir}: the baseline's files do not fit together")
        return cls(vocabulary, idf, coef, intercept, classes, meta["labels"], meta, words if units == WORDS else None)

    def save(self, model_dir: Path | str) -> None:
        model_dir = Path(model_dir)
        (model_dir / VOCABULARY_FILE).write_text(json.dumps(self.vocabulary, ensure_ascii=False), encoding="utf-8")
        np.savez_compressed(model_dir / WEIGHTS_FILE, idf=self.idf, coef=self.coef, intercept=self.intercept,
                            classes=np.array(self.classes, dtype=str))
        (model_dir / META_FILE).write_text(json.dumps(self.info, ensure_ascii=False, indent=2), encoding="utf-8")

    def probabilities(self, texts: list[str], paths: list[str]) -> np.ndarray:
        """As TfidfVectorizer(sublinear_tf) + LogisticRegression.predict_proba compute them."""
        decision = np.empty((len(texts), self.coef.shape[0]))
        for row, document in enumerate(documents(texts, paths)):
            counts = Counter(i for gram in self.analyse(document) if (i := self.vocabulary.get(gram)) is not None)
            columns = np.fromiter(counts, dtype=np.int64, count=len(counts))
            values = (np.log(np.fromiter(counts.values(), dtype=float, count=len(counts))) + 1.0) * self.idf[columns]
            norm = np.sqrt(values @ values)
            decision[row] = self.coef[:, columns] @ (values / norm if norm > 0 else values)
        decision += self.intercept
        if len(self.classes) == 2:
            positive = 1 / (1 + np.exp(-decision[:, 0]))
            return np.column_stack([1 - positive, positive])
        decision = decision - decision.max(axis=1, keepdims=True)
        exp = np.exp(decision)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, texts: list[str], contexts: list[list[str]] | None = None) -> list[Prediction]:
        if not texts:
            return []
        paths = [path_text(c) for c in contexts_or_empty(contexts, len(texts))]
        probs = self.probabilities(texts, paths)
        full = np.zeros((len(texts), len(self.labels)))
        for j, label in enumerate(self.classes):  # a label absent from training data scores 0
            full[:, self.labels.index(label)] = probs[:, j]
        out = []
        for row, path in zip(full, paths):
            best = int(row.argmax())
            out.append(Prediction(self.labels[best], float(row[best]), dict(zip(self.labels, map(float, row))), context=bool(path)))
        return out
