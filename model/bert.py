"""A fine-tuned BERT-family encoder that labels paragraphs, over the whole paragraph.

The encoder reads a text pair: the paragraph's heading path (empty when unknown), then the
paragraph. Paragraphs longer than the model's window are covered by overlapping windows, each
with the path in front; the windows' probabilities are averaged, weighted by how many tokens
each holds, and the result says how many windows were used. Prediction is batched, sorted by
length (less padding), under `torch.inference_mode()`, with the thread count set once.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from model.context import contexts_or_empty, path_text
from model.predictor import Prediction, read_meta

TRAINING_CONFIG = "training_config.json"


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


class PairEncoder:
    """(heading path, paragraph) → model inputs, the same way in training and prediction.

    The path (with the e5 prefix) is the first text and never takes more than half the window:
    a longer one is cut at a token boundary. Paths repeat across a report, so cuts are cached.
    """

    def __init__(self, tokenizer, max_length: int, prefix: str):
        self.tokenizer, self.max_length, self.prefix = tokenizer, max_length, prefix
        self._fitted: dict[str, str] = {}

    def first(self, path: str) -> str:
        if path not in self._fitted:
            text = self.prefix + path
            encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            budget = self.max_length // 2
            if len(encoded["input_ids"]) > budget:
                text = text[: encoded["offset_mapping"][budget - 1][1]]
            self._fitted[path] = text
        return self._fitted[path]

    def __call__(self, paths: list[str], texts: list[str], stride: int | None = None):
        """Padded tensors; with `stride`, long paragraphs overflow into overlapping windows."""
        windows = {"stride": min(stride, self.max_length // 4), "return_overflowing_tokens": True} if stride is not None else {}
        return self.tokenizer([self.first(p) for p in paths], texts, truncation="only_second",
                              max_length=self.max_length, padding=True, return_tensors="pt", **windows)


class BertPredictor:
    def __init__(self, model, tokenizer, meta: dict, max_length: int, stride: int, prefix: str, batch_size: int = 32):
        self.model, self.tokenizer, self.info = model.eval(), tokenizer, meta
        self.labels: list[str] = meta["labels"]
        self.model_id: str = meta.get("model_id", "bert")
        self.max_length, self.stride, self.prefix, self.batch_size = max_length, stride, prefix, batch_size
        self.pairs = PairEncoder(tokenizer, max_length, prefix)

    @classmethod
    def load(cls, model_dir: Path | str, threads: int | None = None, batch_size: int = 32) -> "BertPredictor":
        from transformers import AutoTokenizer

        from model.pooling import load_classifier

        set_threads(threads)
        meta = read_meta(model_dir)
        config = json.loads((Path(model_dir) / TRAINING_CONFIG).read_text(encoding="utf-8"))
        model = load_classifier(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        return cls(model, tokenizer, meta, config["max_length"], config["stride"], config.get("text_prefix", ""), batch_size)

    def encode_windows(self, texts: list[str], paths: list[str] | None = None) -> tuple[dict, list[int]]:
        """All windows of all texts (each with its path in front), and for each window the index of its text."""
        encoded = self.pairs(paths or [""] * len(texts), texts, stride=self.stride)
        owners = encoded.pop("overflow_to_sample_mapping").tolist()
        return dict(encoded), owners

    def window_probabilities(self, batch: dict) -> torch.Tensor:
        with torch.inference_mode():
            return torch.softmax(self.model(**batch).logits.float(), dim=-1)

    def predict(self, texts: list[str], contexts: list[list[str]] | None = None) -> list[Prediction]:
        if not texts:
            return []
        paths = [path_text(c) for c in contexts_or_empty(contexts, len(texts))]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]) + len(paths[i]))
        results: dict[int, Prediction] = {}
        for start in range(0, len(order), self.batch_size):
            chunk = order[start: start + self.batch_size]
            encoded, owners = self.encode_windows([texts[i] for i in chunk], [paths[i] for i in chunk])
            probs = torch.cat(
                [
                    self.window_probabilities({k: v[s: s + self.batch_size] for k, v in encoded.items()})
                    for s in range(0, len(owners), self.batch_size)
                ]
            )
            weights = encoded["attention_mask"].sum(dim=1).float()
            for local, index in enumerate(chunk):
                mine = [w for w, owner in enumerate(owners) if owner == local]
                combined = (probs[mine] * weights[mine, None]).sum(0) / weights[mine].sum()
                results[index] = self._prediction(combined, len(mine), bool(paths[index]))
        return [results[i] for i in range(len(texts))]

    def _prediction(self, probs: torch.Tensor, windows: int, context: bool) -> Prediction:
        values = probs.tolist()
        best = max(range(len(values)), key=values.__getitem__)
        return Prediction(self.labels[best], values[best], dict(zip(self.labels, values)), windows, context)
