"""A fine-tuned BERT-family encoder that labels paragraphs, over the whole paragraph.

The encoder reads a text pair: the paragraph's heading path (empty when unknown), then the
paragraph. Paragraphs longer than the model's window are covered by overlapping windows, each
with the path in front; the windows' probabilities are averaged, weighted by how many tokens
each holds, and the result says how many windows were used.

`WindowedPredictor` is everything but the forward pass, shared by every backend (torch here,
ONNX Runtime in model/onnx_backend.py), so they read exactly the same windows:
- windows only where a paragraph is longer than the window (a short one is one plain encoding);
- all windows of a call sorted by length and cut into batches by a token budget (rows × longest
  row), so short paragraphs are never padded to a long one's length;
- each distinct (paragraph, path) computed once a call, and recent results kept in an LRU cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from model.cache import LRUCache, text_key
from model.context import contexts_or_empty, path_text
from model.predictor import Prediction, read_meta

TRAINING_CONFIG = "training_config.json"

MAX_FITTED_PATHS = 10_000
Features = dict[str, list[int]]  # one window's tokenizer output (input_ids, attention_mask, …), unpadded


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def read_window_config(model_dir: Path | str) -> tuple[int, int, str]:
    """(window length, stride, text prefix) the folder was trained with."""
    config = json.loads((Path(model_dir) / TRAINING_CONFIG).read_text(encoding="utf-8"))
    return config["max_length"], config["stride"], config.get("text_prefix", "")


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
            if len(self._fitted) >= MAX_FITTED_PATHS:  # a long-running service sees endless paths: stay bounded
                self._fitted.clear()
            text = self.prefix + path
            encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            budget = self.max_length // 2
            if len(encoded["input_ids"]) > budget:
                text = text[: encoded["offset_mapping"][budget - 1][1]]
            self._fitted[path] = text
        return self._fitted[path]

    def first_windows(self, paths: list[str], texts: list[str]) -> list[Features]:
        """Each text's first window only, unpadded (training reads a paragraph's opening)."""
        encoded = self.tokenizer([self.first(p) for p in paths], texts, truncation="only_second", max_length=self.max_length)
        keys = [k for k in self.tokenizer.model_input_names if k in encoded]
        return [{k: encoded[k][i] for k in keys} for i in range(len(texts))]

    def _overflow(self, stride: int) -> dict:
        return {"stride": min(stride, self.max_length // 4), "return_overflowing_tokens": True}

    def __call__(self, paths: list[str], texts: list[str], stride: int | None = None):
        """Padded tensors; with `stride`, long paragraphs overflow into overlapping windows."""
        windows = self._overflow(stride) if stride is not None else {}
        return self.tokenizer([self.first(p) for p in paths], texts, truncation="only_second",
                              max_length=self.max_length, padding=True, return_tensors="pt", **windows)

    def windows(self, paths: list[str], texts: list[str], stride: int) -> list[tuple[int, Features]]:
        """Every window of every text, unpadded, as (index of its text, features).

        One pass cut one token past the window tells the short texts (encoded: done) from the long
        ones, which alone go through the overflow machinery. The cut keeps a 20,000-character
        paragraph's first pass cheap, and a short text's encoding is the one the overflow would give.
        """
        firsts = [self.first(p) for p in paths]
        fitted = self.tokenizer(firsts, texts, truncation="only_second", max_length=self.max_length + 1)
        keys = [k for k in self.tokenizer.model_input_names if k in fitted]
        out, long = [], []
        for i, ids in enumerate(fitted["input_ids"]):
            if len(ids) > self.max_length:
                long.append(i)
            else:
                out.append((i, {k: fitted[k][i] for k in keys}))
        if long:
            encoded = self.tokenizer([firsts[i] for i in long], [texts[i] for i in long], truncation="only_second",
                                     max_length=self.max_length, **self._overflow(stride))
            for w, owner in enumerate(encoded["overflow_to_sample_mapping"]):
                out.append((long[owner], {k: encoded[k][w] for k in keys}))
        return out


def token_budget_batches(lengths: list[int], budget: int) -> list[range]:
    """Runs of consecutive rows (`lengths` sorted ascending) whose padded size, rows × the longest,
    stays within `budget` tokens; a row over the budget on its own gets a batch of its own."""
    batches, start = [], 0
    for i, length in enumerate(lengths):
        if i > start and (i - start + 1) * length > budget:
            batches.append(range(start, i))
            start = i
    if lengths:
        batches.append(range(start, len(lengths)))
    return batches


def pad_features(windows: list[Features], pad_id: int) -> dict[str, np.ndarray]:
    """Right-padded int64 arrays, as the tokenizer pads (pad id for tokens, 0 elsewhere)."""
    width = max(len(w["input_ids"]) for w in windows)
    batch = {}
    for key in windows[0]:
        array = np.full((len(windows), width), pad_id if key == "input_ids" else 0, dtype=np.int64)
        for row, window in enumerate(windows):
            array[row, : len(window[key])] = window[key]
        batch[key] = array
    return batch


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class WindowedPredictor:
    """The predictor every backend shares; a backend supplies `logits` (a padded batch of int64
    arrays → float32 logits, one row per window) and its name in `backend`."""

    backend = "none"

    def __init__(self, tokenizer, meta: dict, max_length: int, stride: int, prefix: str,
                 max_batch_tokens: int, cache_size: int = 0):
        self.tokenizer, self.info = tokenizer, meta
        self.labels: list[str] = meta["labels"]
        self.model_id: str = meta.get("model_id", "bert")
        self.max_length, self.stride, self.prefix = max_length, stride, prefix
        self.max_batch_tokens = max_batch_tokens
        self.rows_apart = False  # each window a batch of its own (an int8 backend's choice: model/onnx_backend.py)
        self.pairs = PairEncoder(tokenizer, max_length, prefix)
        self.cache: LRUCache[Prediction] = LRUCache(cache_size)
        self.backend_reason = ""  # why this backend serves (set by model.backends when it chooses)
        self.first_window_threshold: float | None = None  # set from the export's record (model.backends); None: every window
        self.pad_id = tokenizer.pad_token_id or 0

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def predict(self, texts: list[str], contexts: list[list[str]] | None = None) -> list[Prediction]:
        if not texts:
            return []
        paths = [path_text(c) for c in contexts_or_empty(contexts, len(texts))]
        keys = [text_key(text, path) for text, path in zip(texts, paths)]  # what the model reads
        found: dict[bytes, Prediction] = {}
        todo: dict[bytes, int] = {}  # each distinct paragraph once a call: key → its first index
        for i, key in enumerate(keys):
            if key in found or key in todo:
                continue
            hit = self.cache.get(key) if self.cache.size else None
            if hit is None:
                todo[key] = i
            else:
                found[key] = hit
        if todo:
            first = list(todo.values())
            for key, prediction in zip(todo, self._compute([texts[i] for i in first], [paths[i] for i in first])):
                found[key] = prediction
                self.cache.put(key, prediction)
        return [found[key] for key in keys]

    def _compute(self, texts: list[str], paths: list[str]) -> list[Prediction]:
        windows = self.pairs.windows(paths, texts, self.stride)
        windows, probs = self.first_window_rule(windows, paths) if self.first_window_threshold else (windows, self.window_scores(windows, softmax))
        owners = np.array([owner for owner, _ in windows])
        sizes = np.array([len(features["input_ids"]) for _, features in windows], dtype=np.float32)
        combined = np.zeros((len(texts), probs.shape[1]), dtype=np.float32)
        np.add.at(combined, owners, probs * sizes[:, None])  # weighted by each window's token count
        combined /= np.bincount(owners, weights=sizes, minlength=len(texts)).astype(np.float32)[:, None]
        counts = np.bincount(owners, minlength=len(texts))
        return [self._prediction(combined[i], int(counts[i]), bool(paths[i])) for i in range(len(texts))]

    def first_window_rule(self, windows: list[tuple[int, Features]], paths: list[str]) -> tuple[list, np.ndarray]:
        """A long paragraph's first window read first; the rest only when the first's calibrated top
        score is below `first_window_threshold` (when it is above, the other windows rarely change the
        label: the threshold is chosen on dev at export). Returns the windows read and their scores."""
        first: dict[int, int] = {}
        counts = np.bincount([owner for owner, _ in windows])
        for i, (owner, _) in enumerate(windows):
            first.setdefault(owner, i)
        heads = [first[owner] for owner in first if counts[owner] > 1]
        head_probs = self.window_scores([windows[i] for i in heads], softmax)
        tops = self.calibrated_tops(head_probs, [bool(paths[windows[i][0]]) for i in heads])
        sure = {windows[i][0] for i, top in zip(heads, tops) if top >= self.first_window_threshold}
        keep = [i for i, (owner, _) in enumerate(windows) if owner not in sure or i == first[owner]]
        known = dict(zip(heads, head_probs))
        todo = [i for i in keep if i not in known]
        for i, row in zip(todo, self.window_scores([windows[i] for i in todo], softmax)):
            known[i] = row
        return [windows[i] for i in keep], np.array([known[i] for i in keep], dtype=np.float32).reshape(len(keep), len(self.labels))

    def calibrated_tops(self, probs: np.ndarray, contexts: list[bool]) -> np.ndarray:
        """Each row's top score as served: scaled by the folder's temperature for the row's mode
        (read with its heading path or not; model/calibration.py)."""
        from model.calibration import scale, stored_temperatures

        path_t, alone_t = stored_temperatures(self.info) or (1.0, 1.0)
        with_path = np.array(contexts, dtype=bool)
        return np.where(with_path, scale(probs, path_t).max(axis=-1), scale(probs, alone_t).max(axis=-1)) if len(probs) else np.zeros(0)

    def window_scores(self, windows: list[tuple[int, Features]], transform=lambda x: x) -> np.ndarray:
        """`transform(logits)` of every window, in the order given, computed in token-budget batches
        of windows sorted by length (padding only to the batch's longest), or one by one (`rows_apart`)."""
        lengths = [len(features["input_ids"]) for _, features in windows]
        order = sorted(range(len(windows)), key=lengths.__getitem__)
        out = np.empty((len(windows), len(self.labels)), dtype=np.float32)
        budget = 1 if self.rows_apart else self.max_batch_tokens  # every window is over a budget of 1: one a batch
        for rows in token_budget_batches([lengths[w] for w in order], budget):
            chosen = [order[r] for r in rows]
            out[chosen] = transform(self.logits(self.pad([windows[w][1] for w in chosen])))
        return out

    def pad(self, windows: list[Features]) -> dict[str, np.ndarray]:
        return pad_features(windows, self.pad_id)

    def encode_windows(self, texts: list[str], paths: list[str] | None = None) -> tuple[dict, list[int]]:
        """All windows of all texts as padded tensors (the tokenizer's own overflow), and for each
        window the index of its text: for inspecting what the model reads."""
        encoded = self.pairs(paths or [""] * len(texts), texts, stride=self.stride)
        owners = encoded.pop("overflow_to_sample_mapping").tolist()
        return dict(encoded), owners

    def window_probabilities(self, batch: dict) -> torch.Tensor:
        """The probabilities of one padded batch of windows (tensors or arrays)."""
        return torch.from_numpy(softmax(self.logits({k: np.asarray(v, dtype=np.int64) for k, v in batch.items()})))

    def _prediction(self, probs: np.ndarray, windows: int, context: bool) -> Prediction:
        values = probs.tolist()
        best = max(range(len(values)), key=values.__getitem__)
        return Prediction(self.labels[best], values[best], dict(zip(self.labels, values)), windows, context)


class BertPredictor(WindowedPredictor):
    """The torch backend: the trained PyTorch model under `torch.inference_mode()`.

    `batch_size` full windows make the default token budget (in-memory predictors in training)."""

    backend = "torch"

    def __init__(self, model, tokenizer, meta: dict, max_length: int, stride: int, prefix: str, batch_size: int = 32,
                 max_batch_tokens: int | None = None, cache_size: int = 0):
        super().__init__(tokenizer, meta, max_length, stride, prefix, max_batch_tokens or batch_size * max_length, cache_size)
        self.model, self.batch_size = model.eval(), batch_size

    @classmethod
    def load(cls, model_dir: Path | str, threads: int | None = None, batch_size: int = 32,
             max_batch_tokens: int | None = None, cache_size: int = 0, meta: dict | None = None) -> "BertPredictor":
        from transformers import AutoTokenizer

        from model.pooling import load_classifier

        set_threads(threads)
        meta = meta or read_meta(model_dir)  # the caller's copy, when it has read it already
        max_length, stride, prefix = read_window_config(model_dir)
        model = load_classifier(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        return cls(model, tokenizer, meta, max_length, stride, prefix, batch_size, max_batch_tokens, cache_size)

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return self.model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.float().numpy()
