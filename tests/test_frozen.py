"""Training only the top of the encoder: frozen bottom layers whose outputs are cached, and layer
truncation. The cached path must give what the plain model gives (cached outputs equal recomputed
ones), and only the top must move in training."""

import pytest
import torch

from model.bert import BertPredictor, PairEncoder
from model.frozen import BottomCache, CachedBottomPredictor, window_key
from renda.labels import LABELS
from renda.records import Record
from tests.conftest import TINY_OVERRIDES, build_tiny_base
from training.config import load_config
from training.train import build_model, fine_tune, length_batches, training_logits

TEXTS = ["依法开展执法检查，听取审议专项工作报告。" * 4, "制定条例两件。", "加强代表联络站建设，办理代表建议。", "坚持党的领导。"]
PATHS = [["一、依法行使监督职权"], [], ["三、密切联系代表"], ["一、坚持党的领导"]]


@pytest.fixture(scope="module")
def base4(tmp_path_factory):
    """A 4-layer tiny BERT, so there is a bottom to freeze and a top to train."""
    return build_tiny_base(tmp_path_factory.mktemp("base4"), TEXTS + [p for ps in PATHS for p in ps] + ["立法监督代表党"], layers=4)


def config_of(**overrides):
    return load_config(**{**TINY_OVERRIDES, **overrides})


def labels_meta():
    return {"kind": "bert", "labels": LABELS, "model_id": "t"}


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_cached_bottom_gives_the_plain_models_scores(base4, pooling):
    config = config_of(pooling=pooling, freeze_layers=2)
    model, tokenizer = build_model(str(base4), config)
    plain = BertPredictor(model, tokenizer, labels_meta(), config.max_length, config.stride, "", 4)
    bottom = BottomCache(2, str(base4))
    cached = CachedBottomPredictor(model, tokenizer, labels_meta(), config.max_length, config.stride, "", 4, bottom=bottom)
    want, got = plain.predict(TEXTS, PATHS), cached.predict(TEXTS, PATHS)
    assert [p.windows for p in got] == [p.windows for p in want] and want[0].windows > 1  # the long one has windows
    for a, b in zip(want, got):
        assert b.label == a.label and all(abs(a.scores[k] - b.scores[k]) < 1e-5 for k in LABELS)
    computed = bottom.computed
    assert computed == sum(p.windows for p in want)
    cached.predict(TEXTS, PATHS)
    assert bottom.computed == computed  # read back, not recomputed


def test_cached_outputs_equal_recomputed_ones(base4):
    config = config_of(freeze_layers=2)
    model, tokenizer = build_model(str(base4), config)
    windows = PairEncoder(tokenizer, config.max_length, "").first_windows(["", "一、立法"], TEXTS[:2])
    bottom = BottomCache(2, str(base4))
    first = [t.clone() for t in bottom.hidden(model.bert, windows)]
    fresh = BottomCache(2, str(base4)).hidden(model.bert, list(reversed(windows)))[::-1]  # other batches, other padding
    for a, b in zip(first, fresh):
        assert torch.allclose(a, b, atol=1e-5)
    assert len(bottom.store) == 2 and window_key(windows[0]) in bottom.store


def test_training_on_the_cache_matches_the_plain_forward_and_moves_only_the_top(base4):
    config = config_of(freeze_layers=2)
    model, tokenizer = build_model(str(base4), config)
    frozen = [p for p in model.bert.embeddings.parameters()] + [p for layer in model.bert.encoder.layer[:2] for p in layer.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert all(p.requires_grad for layer in model.bert.encoder.layer[2:] for p in layer.parameters())
    model.eval()  # no dropout: the two paths must agree exactly
    windows = PairEncoder(tokenizer, config.max_length, "").first_windows(["一、立法", ""], TEXTS[1:3])
    pad_id = tokenizer.pad_token_id
    cached = training_logits(model, windows, pad_id, BottomCache(2, str(base4)))
    plain = training_logits(model, windows, pad_id, None)
    assert torch.allclose(cached, plain, atol=1e-5)
    cached.sum().backward()
    assert model.bert.encoder.layer[3].output.dense.weight.grad is not None
    assert model.bert.encoder.layer[0].output.dense.weight.grad is None

    before = {k: v.clone() for k, v in model.state_dict().items()}
    records = [Record(report_id=f"r{i % 2}", text=t, label=LABELS[i % 3], heading_path=p) for i, (t, p) in enumerate(zip(TEXTS * 3, PATHS * 3))]
    tuned = fine_tune(records, records[:4], str(base4), config, progress=False)
    after = tuned.model.state_dict()
    assert torch.equal(after["bert.encoder.layer.1.output.dense.weight"], before["bert.encoder.layer.1.output.dense.weight"])
    assert torch.equal(after["bert.embeddings.position_embeddings.weight"], before["bert.embeddings.position_embeddings.weight"])
    assert not torch.equal(after["bert.encoder.layer.3.output.dense.weight"], before["bert.encoder.layer.3.output.dense.weight"])
    assert tuned.bottom is not None and tuned.bottom.computed > 0


def test_a_cache_is_never_used_for_other_frozen_weights(base4):
    bottom = BottomCache(2, str(base4))
    bottom.check(2, str(base4))
    with pytest.raises(ValueError, match="below layer"):
        bottom.check(3, str(base4))
    with pytest.raises(ValueError, match="freeze_layers"):
        build_model(str(base4), config_of(freeze_layers=4))  # nothing would be left to train


def test_layer_truncation_keeps_the_bottom_layers(base4):
    full, _ = build_model(str(base4), config_of())
    kept, _ = build_model(str(base4), config_of(layers=2))
    assert len(kept.bert.encoder.layer) == 2 and kept.config.num_hidden_layers == 2
    for name, value in kept.bert.state_dict().items():
        assert torch.equal(value, full.bert.state_dict()[name])  # the same pretrained weights, the top two dropped
    with pytest.raises(ValueError, match="has 4"):
        build_model(str(base4), config_of(layers=5))  # a fifth layer would be random weights


def test_length_batches_pad_little_and_cover_every_row_once():
    lengths = [5, 50, 7, 48, 6, 49, 8, 47] * 4
    batches = length_batches(lengths, 4, torch.Generator().manual_seed(0))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 3 for b in batches)  # short rows with short ones

