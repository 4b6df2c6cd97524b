"""End to end on a tiny BERT built in the test: train a few steps, save, reload, predict."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from model.bert import BertPredictor
from model.context import path_text
from model.loading import load_predictor
from renda.labels import LABELS
from tests.conftest import TINY_OVERRIDES, export_that_fails
from training import train as train_module
from training.config import load_config
from training.pipeline import run_train


def test_trained_folder_holds_everything(tiny_model):
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["id2label"] == {str(i): label for i, label in enumerate(LABELS)}
    assert config["label2id"] == {label: i for i, label in enumerate(LABELS)}
    meta = json.loads((tiny_model / "renda_model.json").read_text())
    assert meta["kind"] == "bert" and meta["labels"] == LABELS and meta["test_metrics"]["paragraphs"] > 0
    assert json.loads((tiny_model / "training_config.json").read_text())["max_length"] == TINY_OVERRIDES["max_length"]
    log = [json.loads(l) for l in (tiny_model / "train_log.jsonl").read_text().splitlines()]
    assert log and {"epoch", "loss", "dev_macro_f1"} <= set(log[0])
    card = (tiny_model / "README.md").read_text()
    assert "Held-out reports" in card and "minutes" in card and "AutoModel.from_pretrained" in card
    assert not list(tiny_model.parent.glob(".*staging*"))


def test_reload_and_predict(tiny_model):
    predictor = load_predictor(tiny_model)
    texts = ["加强代表联络站建设，办理代表建议。", "制定条例两件。", "听取审议专项工作报告。"]
    predictions = predictor.predict(texts)
    assert len(predictions) == 3
    for p in predictions:
        assert p.label in LABELS and p.scores[p.label] == p.score == max(p.scores.values())
        assert abs(sum(p.scores.values()) - 1) < 1e-5
    # order kept although prediction sorts by length; same text, same answer alone or in a batch
    alone = predictor.predict([texts[1]])[0]
    assert alone.label == predictions[1].label and abs(alone.score - predictions[1].score) < 1e-5


def test_long_paragraphs_use_overlapping_windows_combined_by_length(tiny_model):
    predictor = BertPredictor.load(tiny_model)
    long_text = "依法开展执法检查，听取审议专项工作报告。" * 12  # far beyond the 32-token window
    [prediction] = predictor.predict([long_text])
    encoded, owners = predictor.encode_windows([long_text])
    assert prediction.windows == len(owners) > 1
    probs = predictor.window_probabilities(encoded)
    weights = encoded["attention_mask"].sum(dim=1).float()
    expected = (probs * weights[:, None]).sum(0) / weights.sum()
    assert torch.allclose(torch.tensor([prediction.scores[l] for l in LABELS]), expected, atol=1e-5)
    # windows overlap: the second window starts before the first one ends ([CLS] [SEP] = the empty path)
    ids = encoded["input_ids"]
    first, second = ids[0][2:-1].tolist(), ids[1][2:].tolist()
    assert first[-TINY_OVERRIDES["stride"]:] == second[:TINY_OVERRIDES["stride"]]


def test_text_pairs_reach_the_model_with_the_heading_path_in_every_window(tiny_model):
    predictor = BertPredictor.load(tiny_model)
    path = ["今后工作建议", "（二）紧扣依法履职，增强监督实效"]
    long_text = "依法开展执法检查，听取审议专项工作报告。" * 6
    encoded, owners = predictor.encode_windows([long_text], [path_text(path)])
    tokens = predictor.tokenizer.convert_ids_to_tokens
    first_part = "".join(tokens(encoded["input_ids"][0].tolist())[1:]).split("[SEP]")[0]
    assert len(owners) > 1 and first_part.startswith("今后工作建议")
    for window in encoded["input_ids"].tolist():  # every window reads the path first, cut to half the window
        assert "".join(tokens(window)).startswith("[CLS]" + first_part + "[SEP]")
    assert tokens(encoded["input_ids"][0].tolist()).index("[SEP]") - 1 <= TINY_OVERRIDES["max_length"] // 2
    with_path, alone = predictor.predict(["听取审议专项工作报告。"] * 2, [path, []])
    assert with_path.context and not alone.context
    assert with_path.scores != alone.scores  # the path changes what the model reads
    unpadded = predictor.predict(["听取审议专项工作报告。"])[0]  # no contexts = empty paths
    assert all(abs(unpadded.scores[l] - alone.scores[l]) < 1e-5 for l in LABELS)


def test_a_failed_run_keeps_the_previous_model(tiny_model, tiny_base, starter_dataset, tmp_path, monkeypatch):
    published = tmp_path / "published"
    shutil.copytree(tiny_model, published)
    before = {str(p.relative_to(published)): p.read_bytes() for p in published.rglob("*") if p.is_file()}

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation crashed")

    monkeypatch.setattr(train_module, "evaluate_predictor", broken)
    with pytest.raises(RuntimeError, match="evaluation crashed"):
        train_module.train_bert(starter_dataset, published, str(tiny_base), load_config(**TINY_OVERRIDES), progress=False)
    assert {str(p.relative_to(published)): p.read_bytes() for p in published.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["published"]  # no staging folder left


def test_train_step_skips_when_up_to_date(tiny_base, starter_dataset, tmp_path):
    out = tmp_path / "model"
    overrides = {k: v for k, v in TINY_OVERRIDES.items()}
    from training.config import CONFIG_FILE
    first = run_train(starter_dataset, out, str(tiny_base), CONFIG_FILE, 1, False, **overrides)
    assert first["paragraphs"] > 0
    stamp = json.loads((out / "renda_model.json").read_text())["model_id"]
    assert run_train(starter_dataset, out, str(tiny_base), CONFIG_FILE, 1, True, **overrides) == {}
    assert json.loads((out / "renda_model.json").read_text())["model_id"] == stamp


def test_a_changed_plans_judge_makes_the_model_stale(starter_dataset, monkeypatch, tmp_path):
    """The judge is fitted at training time: its code is part of what a model was trained from."""
    from model import plans_judge
    from training import pipeline

    config = {"plans_judge": True}
    seen = []
    monkeypatch.setattr(pipeline, "is_current", lambda out, name, stamp: seen.append(stamp) or True)
    run_train(starter_dataset, tmp_path, "base", None, 1, True, **config)
    changed = tmp_path / "plans_judge.py"
    changed.write_bytes(Path(plans_judge.__file__).read_bytes() + b"\n# changed\n")
    monkeypatch.setattr(plans_judge, "__file__", str(changed))
    run_train(starter_dataset, tmp_path, "base", None, 1, True, **config)
    run_train(starter_dataset, tmp_path, "base", None, 1, True, plans_judge=False)
    assert len(set(seen)) == 3


@pytest.fixture(scope="module")
def tiny_cls_model(tmp_path_factory, starter_dataset, tiny_base):
    """The other head: transformers' own [CLS] classifier (the shared tiny model has the default, mean)."""
    from training.train import train_bert

    out = tmp_path_factory.mktemp("models") / "tiny-cls"
    train_bert(starter_dataset, out, str(tiny_base), load_config(**{**TINY_OVERRIDES, "pooling": "cls"}), threads=1, progress=False)
    return out


def card_snippet(folder) -> str:
    card = (folder / "README.md").read_text(encoding="utf-8")
    return card.split("```python\n", 1)[1].split("```", 1)[0].replace("PATH/TO/THIS/FOLDER", str(folder))


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_the_model_cards_transformers_snippet_gives_the_predictors_probabilities(pooling, tiny_model, tiny_cls_model):
    folder = tiny_cls_model if pooling == "cls" else tiny_model
    assert json.loads((folder / "config.json").read_text()).get("pooling", "cls") == pooling
    namespace: dict = {}
    exec(card_snippet(folder), namespace)  # the card's own code, as a user would run it
    [prediction] = BertPredictor.load(folder).predict(["加强代表联络站建设。…"], [["今后工作建议"]])
    assert torch.allclose(namespace["probs"], torch.tensor([prediction.scores[l] for l in LABELS]), atol=1e-5)


def test_mean_pooling_trains_saves_and_reloads_as_its_own_class(tiny_model, tiny_cls_model):
    from transformers import BertForSequenceClassification

    from model.pooling import BertForMeanPooledClassification

    config = json.loads((tiny_model / "config.json").read_text())
    assert config["pooling"] == "mean" and config["id2label"]["0"] == LABELS[0]
    assert isinstance(BertPredictor.load(tiny_cls_model).model, BertForSequenceClassification)
    predictor = BertPredictor.load(tiny_model)
    assert isinstance(predictor.model, BertForMeanPooledClassification)
    # padding does not change a text's mean: alone or next to a longer text, the same scores
    alone = predictor.predict(["制定条例两件。"])[0]
    batched = predictor.predict(["制定条例两件。", "听取审议专项工作报告，开展执法检查，推动问题整改。"])[0]
    assert alone.label == batched.label and abs(alone.score - batched.score) < 1e-5


def test_row_weights_reach_the_loss(tiny_base, starter_dataset, monkeypatch):
    from training.dataset import load_split, row_weights
    from training.train import fine_tune, weighted_loss

    logits, targets = torch.randn(3, len(LABELS)), torch.tensor([0, 3, 5])
    label_weight = torch.ones(len(LABELS))
    # a row of weight 0 is as if it were not there; equal weights give plain cross-entropy
    dropped = weighted_loss(logits, targets, label_weight, torch.tensor([1.0, 0.0, 1.0]))
    assert torch.allclose(dropped, torch.nn.functional.cross_entropy(logits[[0, 2]], targets[[0, 2]]))
    assert torch.allclose(weighted_loss(logits, targets, label_weight, torch.full((3,), 2.0)),
                          torch.nn.functional.cross_entropy(logits, targets))

    train = load_split(starter_dataset, "train")
    real = train[0].model_copy(update={"report_id": "a-real-report"})
    assert row_weights([train[0], real], 0.25) == [0.25, 1.0]  # starter rows are known by report id
    seen = []
    monkeypatch.setattr(train_module, "weighted_loss", lambda *args: seen.append(args[3]) or weighted_loss(*args))
    fine_tune(train[:8] + [real], [], str(tiny_base), load_config(**{**TINY_OVERRIDES, "max_steps": 2, "starter_weight": 0.25}), progress=False)
    assert sorted(set(torch.cat(seen).tolist())) == [0.25, 1.0]


def test_loading_a_model_reads_its_metadata_once(tiny_model):
    """renda_model.json is read once per load and passed down to every loader."""
    from pathlib import Path
    from unittest import mock

    from model.predictor import META_FILE

    read = Path.read_text
    with mock.patch.object(Path, "read_text", autospec=True, side_effect=read) as spy:
        load_predictor(tiny_model)
    reads = [call.args[0] for call in spy.call_args_list]
    assert reads.count(tiny_model / META_FILE) == 1
    assert all(reads.count(path) == 1 for path in reads if path.name == META_FILE)  # the plans judge's own, once too


def test_train_with_export_publishes_the_model_and_its_export_together(tiny_base, starter_dataset, tmp_path, monkeypatch):
    """`make train` (run_train with export): the ONNX export is made and checked in staging, so the
    published folder holds it from the first moment; an export that fails publishes nothing."""
    import training.export
    from training.config import CONFIG_FILE

    out = tmp_path / "model"
    real_export, exported = training.export.run_export, []
    monkeypatch.setattr(training.export, "run_export", export_that_fails(exported))
    with pytest.raises(RuntimeError, match="export stopped"):
        run_train(starter_dataset, out, str(tiny_base), CONFIG_FILE, 1, False, True, **TINY_OVERRIDES)
    assert exported and exported[0].parent != out.parent and not out.exists()  # in staging; nothing published
    assert [p.name for p in tmp_path.iterdir()] == []  # and no staging left behind

    def recording_export(folder, data, threads):
        exported.append(Path(folder))
        assert not out.exists()  # the export runs before anything is published
        return real_export(folder, data, threads)

    monkeypatch.setattr(training.export, "run_export", recording_export)
    metrics = run_train(starter_dataset, out, str(tiny_base), CONFIG_FILE, 1, False, True, **TINY_OVERRIDES)
    assert metrics["paragraphs"] > 0 and (out / "onnx_parity.json").is_file() and (out / "renda_model.json").is_file()
    assert json.loads((out / "renda_model.json").read_text(encoding="utf-8"))["model_id"].startswith("model-")  # named as its folder
