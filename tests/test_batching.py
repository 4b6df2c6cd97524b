"""Less work per paragraph: token-budget batches sorted by length across the whole call, windows
only for paragraphs longer than the window, and the LRU cache, each giving the same results."""

from __future__ import annotations

import pytest

from model.bert import BertPredictor, token_budget_batches
from model.cache import LRUCache, text_key
from model.context import path_text
from renda.labels import LABELS
from tests.conftest import TINY_OVERRIDES

WINDOW = TINY_OVERRIDES["max_length"]
SHORT = ["制定条例两件。", "听取审议专项工作报告。", "加强代表联络站建设。", "坚持党的领导。"]
LONG = ["依法开展执法检查，听取审议专项工作报告。" * 9, "组织代表开展集中视察活动三次，邀请代表列席常委会会议四十人次。" * 3]
CONTEXTS = [["今后工作建议"], [], ["一、过去一年的主要工作", "（三）支持和保障代表依法履职"], []]


def same(a, b, tolerance=1e-5) -> bool:
    return (a.label, a.windows, a.context) == (b.label, b.windows, b.context) and all(
        abs(a.scores[label] - b.scores[label]) <= tolerance for label in LABELS)


class Spy:
    """Records the shape of every batch the model is run on."""

    def __init__(self, predictor):
        self.shapes, self.forward = [], predictor.logits
        predictor.logits = self

    def __call__(self, batch):
        self.shapes.append(batch["input_ids"].shape)
        return self.forward(batch)


def test_token_budget_batches_cover_every_row_within_the_budget():
    lengths = sorted([3, 5, 5, 8, 8, 8, 12, 20, 31, 32, 32, 32, 40])
    batches = token_budget_batches(lengths, 64)
    assert [i for b in batches for i in b] == list(range(len(lengths)))  # every row once, in order
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 64
    assert [len(b) for b in batches if lengths[b[-1]] == 40] == [1]  # over the budget alone: a batch of its own
    for b, after in zip(batches, batches[1:]):  # greedy: the next row would have broken the budget
        assert (len(b) + 1) * lengths[after[0]] > 64
    assert token_budget_batches([], 64) == [] and token_budget_batches([7], 1) == [range(0, 1)]


def test_short_paragraphs_skip_the_overflow_machinery_and_read_the_same_tokens(tiny_model):
    predictor = BertPredictor.load(tiny_model)
    texts, paths = SHORT + LONG, [path_text(c) for c in CONTEXTS] + ["", "今后工作建议"]
    windows = predictor.pairs.windows(paths, texts, predictor.stride)
    encoded, owners = predictor.encode_windows(texts, paths)  # the tokenizer's own overflow, for everything
    expected = [[t for t, m in zip(ids, mask) if m] for ids, mask in zip(encoded["input_ids"].tolist(), encoded["attention_mask"].tolist())]
    for text in range(len(texts)):
        mine = [w["input_ids"] for owner, w in windows if owner == text]
        assert mine == [ids for ids, owner in zip(expected, owners) if owner == text]
        assert (len(mine) > 1) == (text >= len(SHORT))  # windows only where the paragraph is longer than the window
    # and the same probabilities as combining the overflow encoding's windows
    predictions = predictor.predict(texts, CONTEXTS + [[], ["今后工作建议"]])
    probs = predictor.window_probabilities(encoded)
    for text, prediction in enumerate(predictions):
        rows = [w for w, owner in enumerate(owners) if owner == text]
        weights = encoded["attention_mask"][rows].sum(dim=1).float()
        combined = (probs[rows] * weights[:, None]).sum(0) / weights.sum()
        assert all(abs(prediction.scores[label] - float(combined[i])) < 1e-5 for i, label in enumerate(LABELS))


def test_batches_follow_the_token_budget_sorted_across_the_whole_call(tiny_model):
    budget = 2 * WINDOW
    predictor = BertPredictor.load(tiny_model, max_batch_tokens=budget)
    spy = Spy(predictor)
    texts = [LONG[0], SHORT[0], LONG[1], SHORT[1], SHORT[2]]  # long and short mixed, as several requests would be
    predictions = predictor.predict(texts)
    widths = [width for _, width in spy.shapes]
    assert widths == sorted(widths)  # one length order over every window of the call
    assert all(rows == 1 or rows * width <= budget for rows, width in spy.shapes)
    assert widths[0] < WINDOW  # short paragraphs are not padded to a long one's window
    assert sum(rows for rows, _ in spy.shapes) == sum(p.windows for p in predictions)
    one_batch = BertPredictor.load(tiny_model, max_batch_tokens=10**6)  # everything in one padded batch
    assert all(same(a, b) for a, b in zip(predictions, one_batch.predict(texts)))
    by_count = BertPredictor.load(tiny_model, batch_size=2)  # no budget given: batch_size full windows
    assert by_count.max_batch_tokens == 2 * WINDOW


def test_the_cache_hits_evicts_and_changes_no_result(tiny_model):
    plain = BertPredictor.load(tiny_model)  # cache off
    cached = BertPredictor.load(tiny_model, cache_size=3)
    spy = Spy(cached)
    texts = SHORT[:3]
    first = cached.predict(texts)
    assert first == plain.predict(texts) and cached.cache.stats()["misses"] == 3 and len(cached.cache) == 3
    calls = len(spy.shapes)
    again = cached.predict(list(reversed(texts)))
    assert again == list(reversed(first)) and len(spy.shapes) == calls  # all hits: the model not run
    assert cached.cache.stats()["hits"] == 3
    with_path = cached.predict([texts[0]], [["今后工作建议"]])[0]  # the key is the text *and* the path read
    assert len(spy.shapes) == calls + 1 and with_path.context and not first[0].context
    # size 3: the least recently used entry went out (texts[2]: the others were used after it)
    assert text_key(texts[2], "") not in cached.cache and text_key(texts[0], "") in cached.cache
    cached.predict([texts[2]])
    assert len(spy.shapes) == calls + 2  # evicted, so computed again
    # the same results, cache or not (to float noise: other batches pad and sum in another order)
    for a, b in zip(cached.predict(texts + LONG), plain.predict(texts + LONG)):
        assert (a.label, a.windows, a.context) == (b.label, b.windows, b.context)
        assert all(abs(a.scores[k] - b.scores[k]) < 1e-6 for k in a.scores)


def test_a_paragraph_repeated_in_one_call_is_computed_once(tiny_model):
    predictor = BertPredictor.load(tiny_model)
    spy = Spy(predictor)
    predictions = predictor.predict([SHORT[0], SHORT[1], SHORT[0], SHORT[0]])
    assert sum(rows for rows, _ in spy.shapes) == 2
    assert predictions[0] == predictions[2] == predictions[3]


def test_lru_cache_alone():
    cache: LRUCache[int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    assert cache.stats() == {"size": 2, "entries": 2, "hits": 3, "misses": 1, "hit_rate": 0.75}
    off: LRUCache[int] = LRUCache(0)
    off.put("a", 1)
    assert len(off) == 0 and off.get("a") is None
    with pytest.raises(ValueError):
        LRUCache(-1)
    assert text_key("段落", "路径") != text_key("段落路径", "") and len(text_key("x" * 20_000, "")) == 16


def test_settings_reach_the_loaded_predictor(tiny_model, monkeypatch):
    from model.loading import load_predictor

    monkeypatch.setenv("CACHE_SIZE", "7")
    monkeypatch.setenv("MAX_BATCH_TOKENS", "96")
    monkeypatch.setenv("BACKEND", "torch")
    predictor = load_predictor(tiny_model, threads=1)
    assert (predictor.cache.size, predictor.max_batch_tokens, predictor.backend) == (7, 96, "torch")
    assert predictor.backend_reason == "BACKEND=torch"
