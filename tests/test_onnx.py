"""The ONNX Runtime backend on the tiny BERT: export, parity record, the same predictions as torch
through the same window code, and the backend choice with every way of falling back to torch."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient

from model.backends import PARITY_FILE, choose_backend, load_bert_predictor
from model.bert import BertPredictor, WindowedPredictor
from model.context import path_text
from model.onnx_backend import ONNX_FILES, OnnxPredictor
from model.loading import load_predictor
from renda.labels import LABELS
from renda.records import DataError
from training import export as export_module
from training.dataset import load_split

TEXTS = ["加强代表联络站建设，办理代表建议。", "制定条例两件。", "依法开展执法检查，听取审议专项工作报告。" * 8]
CONTEXTS = [["今后工作建议"], [], ["一、过去一年的主要工作", "（二）依法履行监督职责"]]


def parity(folder) -> dict:
    return json.loads((folder / PARITY_FILE).read_text(encoding="utf-8"))


def rewrite_parity(folder, change) -> None:
    record = parity(folder)
    change(record)
    (folder / PARITY_FILE).write_text(json.dumps(record), encoding="utf-8")


@pytest.fixture
def copy(tiny_onnx_model, tmp_path):
    """A copy of the exported folder that a test may break."""
    out = tmp_path / "model"
    shutil.copytree(tiny_onnx_model, out)
    return out


def test_export_writes_both_files_and_a_parity_record(tiny_onnx_model, starter_dataset):
    assert (tiny_onnx_model / "model.onnx").is_file() and (tiny_onnx_model / "model.int8.onnx").is_file()
    record = parity(tiny_onnx_model)
    meta = json.loads((tiny_onnx_model / "renda_model.json").read_text())
    assert record["model_id"] == meta["model_id"]
    dev = load_split(starter_dataset, "dev")
    assert record["checked_on"]["paragraphs"] == len(dev) and record["checked_on"]["predictions"] == 2 * len(dev)
    assert record["thresholds"] == {"min_agreement": 0.995, "max_macro_f1_change": 0.005, "macro_f1_per_mode": True}
    onnx = record["backends"]["onnx"]
    assert onnx["passed"] and onnx["agreement"] >= 0.995 and onnx["max_logit_diff"] < 1e-4  # fp32: the same model
    fused = record["backends"]["onnx-fused"]  # fp32 too, fused operators: the same model's scores
    assert (tiny_onnx_model / "model.fused.onnx").is_file() and fused["passed"] and fused["max_logit_diff"] < 1e-4
    for name in ("onnx", "onnx-fused", "onnx-int8"):
        result = record["backends"][name]
        assert {"agreement", "max_logit_diff", "macro_f1", "macro_f1_change", "paragraphs_per_second"} <= set(result)
        # the verdict follows the bar
        assert result["passed"] == (result["agreement"] >= 0.995 and abs(result["macro_f1_change"]) <= 0.005)
    assert record["backends"]["torch"]["passed"] and record["auto"] in record["backends"]


def test_every_int8_variant_is_checked_and_the_kept_one_is_in_the_file(tiny_onnx_model):
    from model.onnx_backend import INT8_VARIANTS, activation_matmuls, export_fused_fp32, open_session, quantize_int8

    record = parity(tiny_onnx_model)
    variants = record["int8_variants"]
    assert [v["variant"] for v in variants] == list(INT8_VARIANTS)
    for v in variants:
        if v.get("skipped"):  # static, the fallback, tried only when no dynamic variant passed; or one that cannot be faster
            assert not v["passed"] and "not tried" in v["reason"]
            earlier = [w for w in variants[: variants.index(v)] if w["passed"]]
            assert INT8_VARIANTS[v["variant"]].get("static") and earlier or any(
                export_module.keeps_more_fp32(v["variant"], w["variant"]) for w in earlier)
            continue
        assert not any(export_module.keeps_more_fp32(v["variant"], w["variant"])
                       for w in variants[: variants.index(v)] if w["passed"])
        assert {"agreement", "macro_f1", "paragraphs_per_second", "passed"} <= set(v), v
        if INT8_VARIANTS[v["variant"]].get("static"):
            assert not any(w["passed"] for w in variants[: variants.index(v)])
    kept = record["backends"]["onnx-int8"]
    passing = [v for v in variants if v["passed"]]
    if passing:
        assert kept["passed"] and kept["paragraphs_per_second"] == max(v["paragraphs_per_second"] for v in passing)
    else:
        assert not kept["passed"] and record["auto"] != "onnx-int8"
    for v in passing:  # timed against fp32 in alternation: its paragraphs/s is fp32's times the ratio
        assert v["speed_vs_onnx_fp32"] > 0
        assert v["paragraphs_per_second"] == round(record["backends"]["onnx"]["paragraphs_per_second"] * v["speed_vs_onnx_fp32"], 2)
    # the file holds the kept variant: its scores are what that variant's parity check saw
    again = OnnxPredictor.load(tiny_onnx_model, "onnx-int8").predict(TEXTS, CONTEXTS)
    fresh_path = tiny_onnx_model / "fresh.int8.onnx"
    from model.predictor import read_meta
    from training.export import calibration_batches, parity_records

    records, _ = parity_records(tiny_onnx_model, read_meta(tiny_onnx_model), None)  # what the export calibrated on
    torch_predictor = BertPredictor.load(tiny_onnx_model)
    calibration = calibration_batches(torch_predictor, records)
    fused_path = tiny_onnx_model / "fresh.fused.onnx"

    def fused():
        return export_fused_fp32(torch_predictor.model, torch_predictor.tokenizer, fused_path)

    quantize_int8(tiny_onnx_model / "model.onnx", fresh_path, kept["variant"], calibration, fused)
    import onnx

    assert onnx.load(str(fresh_path)).graph == onnx.load(str(tiny_onnx_model / "model.int8.onnx")).graph
    fresh_path.unlink()
    assert len(again) == len(TEXTS)
    # the attention products (no weight input) are found: two per layer, two layers
    assert len(activation_matmuls(tiny_onnx_model / "model.onnx")) == 2 * 2
    # the mixed variants leave the MatMuls of the named roles fp32, found from the graph: per layer
    # one FFN input, one FFN output and one value projection, besides query, key and attention output
    from collections import Counter

    from model.onnx_backend import matmul_roles, role_layers

    roles = matmul_roles(tiny_onnx_model / "model.onnx")
    assert Counter(roles.values()) == {"other": 3 * 2, "value": 2, "ffn_in": 2, "ffn_out": 2}
    assert Counter(role_layers(roles).values()) == {0: 6, 1: 6}  # each layer's six, bottom first
    from model.onnx_backend import fp32_nodes

    bottom_ffn_out = fp32_nodes(roles, {"ffn_out": (0.0, 0.5)})
    assert len(bottom_ffn_out) == 1 and role_layers(roles)[bottom_ffn_out[0]] == 0
    assert len(fp32_nodes(roles, {"ffn_out": (0.0, 1.0), "value": (0.5, 1.0)})) == 3
    for variant, options in INT8_VARIANTS.items():
        if "fp32" not in options or options.get("fused"):
            continue
        quantize_int8(tiny_onnx_model / "model.onnx", fresh_path, variant)
        left = {node.name for node in onnx.load(str(fresh_path)).graph.node if node.op_type == "MatMul"}
        kept_fp32 = {name for name, role in roles.items() if role in options["fp32"]}
        assert kept_fp32 <= left and not (set(roles) - kept_fp32) & left, variant
        assert {f"{n.name}_MatMul" for n in onnx.load(str(tiny_onnx_model / "model.onnx")).graph.node
                if n.op_type == "Gemm"} <= left  # the classifier (a Gemm the quantiser makes a MatMul) stays fp32
    fresh_path.unlink()
    # the fused graph: ONNX Runtime's Attention operator in every layer, torch's scores
    fused()
    assert not torch_predictor.model.training  # the tracer left the model as it found it: no dropout
    ops = Counter(node.op_type for node in onnx.load(str(fused_path)).graph.node)
    assert ops["Attention"] == 2 and ops["SkipLayerNormalization"] >= 2
    fused_roles = matmul_roles(fused_path)  # the attention operator, its output, FFN in and out, per layer
    assert Counter(fused_roles.values()) == {"attention": 2, "other": 2, "ffn_in": 2, "ffn_out": 2}
    scored = OnnxPredictor.load(tiny_onnx_model, "onnx")
    windows = [(0, f) for f in scored.pairs.first_windows([path_text(c) for c in CONTEXTS], TEXTS)]

    def scores(path):
        scored.session = open_session(path)
        scored.input_names = [i.name for i in scored.session.get_inputs()]
        return scored.window_scores(windows)

    assert np.allclose(scores(fused_path), torch_predictor.window_scores(windows), atol=1e-4)
    # the fused variants: the attention and every MatMul int8 (QAttention, MatMulInteger) but the FFN
    # output of the layers named, each input smoothed first; smoothing alone changes no score
    from model.onnx_backend import input_ranges, smooth_activations

    smoothed = smooth_activations(fused_path, tiny_onnx_model / "smoothed.onnx", input_ranges(fused_path, calibration), 0.75)
    assert Counter(n.op_type for n in onnx.load(str(smoothed)).graph.node)["Mul"] == ops["Mul"] + len(fused_roles)
    assert np.allclose(scores(smoothed), scores(fused_path), atol=1e-4)
    smoothed.unlink()
    ranges = {}  # shared by the variants, as the export shares it: the fused graph's ranges measured once
    for variant, options in INT8_VARIANTS.items():
        if not options.get("fused"):
            continue
        quantize_int8(tiny_onnx_model / "model.onnx", fresh_path, variant, calibration, fused, ranges)
        assert list(ranges) == [str(fused_path)]
        ops = Counter(node.op_type for node in onnx.load(str(fresh_path)).graph.node)
        layers_fp32 = {role: round(2 * (hi - lo)) for role, (lo, hi) in options.get("fp32", {}).items()}  # of 2 layers
        fp32_ffn_out = layers_fp32.get("ffn_out", 0)
        assert ops["QAttention"] == 2 - layers_fp32.get("attention", 0) and ops["Attention"] == layers_fp32.get("attention", 0), variant
        # the classifier (a Gemm the quantiser makes a MatMul) stays fp32 too
        assert ops["MatMul"] == fp32_ffn_out + 1 and ops["MatMulInteger"] == 2 * 3 - fp32_ffn_out, variant
        assert np.abs(scores(fresh_path) - scores(fused_path)).max() < 1.0, variant  # int8: near, not equal
        assert not (tiny_onnx_model / "fresh.int8.onnx.smoothed").exists()  # the smoothed graph is not left behind
    with pytest.raises(ValueError, match="fused graph"):
        quantize_int8(tiny_onnx_model / "model.onnx", fresh_path, "fused, smoothed, every MatMul and the attention")
    with pytest.raises(ValueError, match="calibration"):
        quantize_int8(tiny_onnx_model / "model.onnx", fresh_path, "fused, smoothed, every MatMul and the attention", fused=fused)
    fresh_path.unlink()
    fused_path.unlink()
    # the static variant is QDQ: its activations are quantised by calibrated scales, not at run time
    quantize_int8(tiny_onnx_model / "model.onnx", fresh_path, "static, per-channel, reduce_range", calibration)
    ops = {node.op_type for node in onnx.load(str(fresh_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "DynamicQuantizeLinear" not in ops
    fresh_path.unlink()
    with pytest.raises(ValueError, match="calibration"):
        quantize_int8(tiny_onnx_model / "model.onnx", fresh_path, "static, per-channel, reduce_range")


def test_onnx_predictions_match_torch_through_the_same_windows(tiny_onnx_model):
    torch_predictor = BertPredictor.load(tiny_onnx_model)
    onnx_predictor = OnnxPredictor.load(tiny_onnx_model, "onnx")
    # one implementation of windows, batches, cache; only the forward pass differs
    assert isinstance(onnx_predictor, WindowedPredictor)
    for method in ("predict", "window_scores", "pad", "encode_windows"):
        assert getattr(OnnxPredictor, method) is getattr(WindowedPredictor, method) is getattr(BertPredictor, method)
    expected, got = torch_predictor.predict(TEXTS, CONTEXTS), onnx_predictor.predict(TEXTS, CONTEXTS)
    assert got[2].windows > 1
    for a, b in zip(expected, got):
        assert (a.label, a.windows, a.context) == (b.label, b.windows, b.context)
        assert all(abs(a.scores[label] - b.scores[label]) < 1e-4 for label in LABELS)
    int8 = OnnxPredictor.load(tiny_onnx_model, "onnx-int8").predict(TEXTS, CONTEXTS)
    assert [p.windows for p in int8] == [p.windows for p in expected]
    assert all(abs(sum(p.scores.values()) - 1) < 1e-4 for p in int8)


def test_int8_scores_a_paragraph_the_same_whatever_it_is_batched_with(tiny_onnx_model, monkeypatch):
    """int8 quantises activations by the whole batch's range: each window is computed on its own."""
    others = ["听取审议政府专项工作报告，开展专题询问。" * 3, "今后工作建议", "代表联络站" * 20]
    alone = OnnxPredictor.load(tiny_onnx_model, "onnx-int8", max_batch_tokens=4096)
    assert alone.rows_apart
    shared = OnnxPredictor.load(tiny_onnx_model, "onnx-int8", max_batch_tokens=4096, rows_apart=False)
    for predictor in (alone, shared):
        one = [predictor.predict([text], [context])[0] for text, context in zip(TEXTS, CONTEXTS)]
        batched = predictor.predict(others + TEXTS, [[]] * len(others) + CONTEXTS)[len(others):]
        same = [a.scores == b.scores for a, b in zip(one, batched)]
        assert all(same) if predictor is alone else not all(same)  # shared: the neighbours move the scores
    assert not OnnxPredictor.load(tiny_onnx_model, "onnx").rows_apart  # fp32 moves by rounding only: batched
    monkeypatch.setenv("INT8_ROWS_APART", "false")
    assert not load_bert_predictor(tiny_onnx_model, threads=1, backend="onnx-int8").rows_apart
    monkeypatch.delenv("INT8_ROWS_APART")
    served = load_bert_predictor(tiny_onnx_model, threads=1, backend="onnx-int8")
    assert served.rows_apart and "INT8_ROWS_APART" in served.backend_reason  # shown by /v1/model


def test_auto_serves_the_fastest_backend_that_passed(tiny_onnx_model):
    record = parity(tiny_onnx_model)
    passed = {name: r["paragraphs_per_second"] for name, r in record["backends"].items() if r["passed"]}
    fastest = max(passed, key=passed.get)
    predictor = load_bert_predictor(tiny_onnx_model, threads=1, backend="auto")
    assert predictor.backend == fastest and "fastest" in predictor.backend_reason
    assert load_bert_predictor(tiny_onnx_model, threads=1, backend="torch").backend == "torch"
    assert load_bert_predictor(tiny_onnx_model, threads=1, backend="onnx").backend == "onnx"


def test_failed_parity_is_never_served(copy):
    def fail(record):
        for name in ONNX_FILES:
            record["backends"][name].update(passed=False, reason=f"{name} failed the parity check at export: agreement 0.97")
            record["backends"][name]["paragraphs_per_second"] = 1e9  # faster than torch, and still not served

    rewrite_parity(copy, fail)
    for wanted in ("auto", "onnx", "onnx-fused", "onnx-int8"):
        predictor = load_bert_predictor(copy, threads=1, backend=wanted)
        assert predictor.backend == "torch", wanted
    assert "failed the parity check" in choose_backend(copy, "onnx")[1]


def test_a_missing_onnx_file_falls_back_with_a_reason(copy):
    rewrite_parity(copy, lambda r: r["backends"]["onnx-int8"].update(passed=True, paragraphs_per_second=1e9))
    (copy / "model.int8.onnx").unlink()
    backend, reason = choose_backend(copy, "onnx-int8")
    assert backend == "torch" and "model.int8.onnx missing" in reason
    backend, reason = choose_backend(copy, "auto")  # the next fastest that passed, and says what it skipped
    assert backend != "onnx-int8" and "model.int8.onnx missing" in reason
    for name in ONNX_FILES:
        (copy / ONNX_FILES[name]).unlink(missing_ok=True)
    predictor = load_bert_predictor(copy, threads=1, backend="auto")
    assert predictor.backend == "torch" and predictor.predict(TEXTS)[0].label in LABELS


def test_no_stale_broken_or_unreadable_export_is_used(copy, tiny_model):
    assert choose_backend(tiny_model, "auto")[0] == "torch"
    assert "no ONNX export" in choose_backend(tiny_model, "onnx")[1]
    rewrite_parity(copy, lambda r: r.update(model_id="an-older-model"))  # the folder was retrained since
    assert choose_backend(copy, "auto")[0] == "torch" and "another model" in choose_backend(copy, "auto")[1]
    rewrite_parity(copy, lambda r: r.update(model_id=json.loads((copy / "renda_model.json").read_text())["model_id"]))
    (copy / "model.onnx").write_bytes(b"not an onnx file")  # corrupt: ONNX Runtime refuses it
    predictor = load_bert_predictor(copy, threads=1, backend="onnx")
    assert predictor.backend == "torch" and "failed to load" in predictor.backend_reason
    (copy / PARITY_FILE).write_text("{not json", encoding="utf-8")
    backend, reason = choose_backend(copy, "auto")
    assert backend == "torch" and "cannot be read" in reason


def test_an_export_that_fails_parity_is_recorded_failed_and_not_used(copy, tiny_onnx_model, monkeypatch):
    def reuse_fp32(model, tokenizer, path):  # the real export is tested by the fixture; reuse its file
        shutil.copy(tiny_onnx_model / "model.onnx", path)
        return path

    monkeypatch.setattr(export_module, "export_fp32", reuse_fp32)
    monkeypatch.setattr(export_module, "MIN_AGREEMENT", 1.01)  # a bar no export can pass
    record = export_module.run_export(copy, threads=1)
    for name in ONNX_FILES:
        assert not record["backends"][name]["passed"] and "failed the parity check" in record["backends"][name]["reason"]
    assert record["auto"] == "torch" and parity(copy)["auto"] == "torch"
    assert load_bert_predictor(copy, threads=1, backend="auto").backend == "torch"

    def broken(model, tokenizer, path):
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(export_module, "export_fp32", broken)
    record = export_module.run_export(copy, threads=1)
    assert "exporter crashed" in record["backends"]["onnx"]["reason"]
    assert "not made" in record["backends"]["onnx-int8"]["reason"] and record["auto"] == "torch"


def test_export_is_skipped_when_up_to_date_and_refuses_other_models(tiny_onnx_model, tmp_path, capsys):
    from apps.cli import main

    before = (tiny_onnx_model / PARITY_FILE).read_bytes()
    assert main(["export", "--model", str(tiny_onnx_model), "--if-stale"]) == 0
    assert "up to date" in capsys.readouterr().out and (tiny_onnx_model / PARITY_FILE).read_bytes() == before
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    (baseline / "renda_model.json").write_text('{"kind": "baseline", "labels": []}', encoding="utf-8")
    assert main(["export", "--model", str(baseline)]) == 2
    assert "for BERT models" in capsys.readouterr().err


def test_an_export_checked_on_other_paragraphs_or_older_variants_is_stale(copy):
    from model.predictor import read_meta

    meta, source = read_meta(copy), parity(copy)["checked_on"]["source"]
    assert export_module.is_current(copy, meta, source)
    assert not export_module.is_current(copy, meta, "../shared/corpus")  # asked to check on real paragraphs
    # where neither --data nor the model's dataset is at hand, an export of this model stands
    meta_file = copy / "renda_model.json"
    meta_file.write_text(json.dumps({**meta, "dataset": str(copy / "gone")}), encoding="utf-8")
    assert export_module.run_export(copy, if_stale=True) == parity(copy)
    with pytest.raises(DataError, match="not here to check parity on"):
        export_module.run_export(copy)
    rewrite_parity(copy, lambda r: r["first_window"].update(max_macro_f1_loss=0.005))  # under an older budget
    assert not export_module.is_current(copy, meta, source)
    rewrite_parity(copy, lambda r: r["first_window"].update(max_macro_f1_loss=export_module.FIRST_WINDOW_MAX_F1_LOSS))
    assert export_module.is_current(copy, meta, source)
    rewrite_parity(copy, lambda r: r["thresholds"].pop("macro_f1_per_mode"))  # checked on pooled macro-F1
    assert not export_module.is_current(copy, meta, source)
    rewrite_parity(copy, lambda r: r["thresholds"].update(export_module.THRESHOLDS))
    assert export_module.is_current(copy, meta, source)
    rewrite_parity(copy, lambda r: r["int8_variants"].pop())  # made before a variant was added
    assert not export_module.is_current(copy, meta, source)
    with pytest.raises(DataError, match="not here to check parity on"):
        export_module.run_export(copy, if_stale=True)


def test_the_service_reports_its_backend(tiny_onnx_model, tiny_model):
    from serving.main import create_app
    from tests.test_service import settings, wait_ready

    for folder, wanted, expected in ((tiny_onnx_model, "onnx", "onnx"), (tiny_model, "auto", "torch")):
        with TestClient(create_app(settings(backend=wanted), model_dir=folder)) as client:
            wait_ready(client)
            body = client.get("/v1/model").json()
            assert body["backend"] == expected and body["backend_reason"]
            response = client.post("/v1/classify", json={"paragraphs": TEXTS})
            assert response.status_code == 200 and len(response.json()["results"]) == 3
    assert load_predictor(tiny_onnx_model, threads=1, backend="onnx-int8").backend in ("onnx-int8", "torch")


def test_first_window_rule_reads_the_rest_only_when_the_first_is_unsure(tiny_onnx_model):
    long_text = "依法开展执法检查，听取审议专项工作报告。" * 12  # several tiny windows
    texts, contexts = [long_text, "制定条例两件。"], [["一、依法行使监督职权"], []]
    predictor = BertPredictor.load(tiny_onnx_model)
    every = predictor.predict(texts, contexts)
    assert every[0].windows > 1 and every[1].windows == 1
    predictor.first_window_threshold = 1e-9  # any first window is sure: one window each
    sure = predictor.predict(texts, contexts)
    assert [p.windows for p in sure] == [1, 1]
    assert np.allclose([sure[1].scores[l] for l in LABELS], [every[1].scores[l] for l in LABELS], atol=1e-6)
    first_only = BertPredictor.load(tiny_onnx_model)
    encoded, _ = first_only.encode_windows([long_text], [path_text(contexts[0])])
    head = first_only.window_probabilities({k: v[:1] for k, v in encoded.items()})[0]
    assert np.allclose([sure[0].scores[l] for l in LABELS], head.numpy(), atol=1e-5)  # the first window's own scores
    predictor.first_window_threshold = 1.0  # never sure: every window, as without the rule
    unsure = predictor.predict(texts, contexts)
    assert [p.windows for p in unsure] == [p.windows for p in every]
    assert all(np.allclose([a.scores[l] for l in LABELS], [b.scores[l] for l in LABELS], atol=1e-6) for a, b in zip(unsure, every))


def test_export_chooses_the_first_window_threshold_and_the_loader_applies_it(tiny_onnx_model, tmp_path):
    record = parity(tiny_onnx_model)["first_window"]
    if record["threshold"] is None:
        assert record["reason"]
    else:
        assert record["long_paragraphs"] > 0 and [t["threshold"] for t in record["tried"]][0] == 0.5
        chosen = next(t for t in record["tried"] if t["threshold"] == record["threshold"])
        assert chosen["agreement"] >= record["min_agreement"] and chosen["macro_f1_change"] >= -record["max_macro_f1_loss"]
        assert all(t["agreement"] < record["min_agreement"] or t["macro_f1_change"] < -record["max_macro_f1_loss"]
                   for t in record["tried"] if t["threshold"] < record["threshold"])
    copy = tmp_path / "copy"
    shutil.copytree(tiny_onnx_model, copy)
    rewrite_parity(copy, lambda r: r["first_window"].update(threshold=0.7))
    assert load_bert_predictor(copy, threads=1, backend="torch").first_window_threshold == 0.7
    rewrite_parity(copy, lambda r: r["first_window"].update(threshold="high"))
    assert load_bert_predictor(copy, threads=1, backend="torch").first_window_threshold is None


def test_the_first_window_rule_may_not_cost_macro_f1(tiny_onnx_model, monkeypatch):
    """Agreement alone is not enough: a threshold whose flipped labels cost more than
    FIRST_WINDOW_MAX_F1_LOSS of macro-F1 in a mode is refused. With the agreement bar off and the gold labels set to what
    reading every window gives, a threshold is kept only if it flips nothing."""
    from renda.records import Record

    monkeypatch.setattr(export_module, "FIRST_WINDOW_AGREEMENT", 0.0)
    monkeypatch.setattr(export_module, "FIRST_WINDOW_GRID", (0.0, 1.0))  # 0: every first window is sure
    texts = [a * 6 + b * 8 for a in TEXTS for b in TEXTS if a != b] + TEXTS  # long ones whose parts disagree
    predictor = BertPredictor.load(tiny_onnx_model)
    paths = [["一、依法行使监督职权"]] * len(texts)
    full = predictor.predict(texts, paths) + predictor.predict(texts, [[]] * len(texts))
    records = [Record(report_id="r", text=t, label=p.label, heading_path=paths[0]) for t, p in zip(texts, full)]
    record = export_module.choose_first_window(predictor, records, full)
    by_threshold = {t["threshold"]: t for t in record["tried"]}
    assert by_threshold[1.0]["agreement"] == 1.0 and by_threshold[1.0]["macro_f1_change"] == 0.0
    flips = by_threshold[0.0]
    assert flips["agreement"] < 1.0, "the long paragraphs' first windows should disagree with the whole"
    assert flips["macro_f1_change"] < -export_module.FIRST_WINDOW_MAX_F1_LOSS and record["threshold"] == 1.0
    assert record["max_macro_f1_loss"] == export_module.FIRST_WINDOW_MAX_F1_LOSS < export_module.MAX_F1_CHANGE


def test_an_export_must_keep_macro_f1_in_each_mode():
    """A loss alone may not hide behind a gain with the path: the worse mode decides."""
    from model.predictor import Prediction

    labels = ["plans", "deputy", "supervision", "other"] * 6
    gold, half = labels * 2, len(labels)  # with the heading path, then alone

    def predicted(names):
        return [Prediction(label=name, score=1.0, scores={name: 1.0}) for name in names]

    class Candidate:
        backend = "onnx-int8"

        def __init__(self, names):
            self.path, self.alone = names[:half], names[half:]

        def predict(self, texts, contexts=None):  # fewer records than one call: every call is all of them
            return predicted(self.path if contexts else self.alone)

        def window_scores(self, windows):
            return np.zeros((1, 4))

    torch_names = labels[:-1] + ["deputy"] + labels  # torch: one miss with the path, none alone
    reference = {"predictions": predicted(torch_names), "gold": gold, "windows": [], "logits": np.zeros((1, 4))}
    reference["mode_f1"] = export_module.mode_f1(gold, torch_names)
    records = [type("R", (), {"text": "x", "heading_path": ["h"]})()] * half
    # the candidate mends torch's miss with the path and makes a new one alone
    result = export_module.compare(reference, Candidate(labels + labels[:-1] + ["deputy"]), records)
    assert result["macro_f1_change_by_mode"]["path"] > 0 > result["macro_f1_change_by_mode"]["alone"]
    assert result["macro_f1_change"] == result["macro_f1_change_by_mode"]["alone"] < -export_module.MAX_F1_CHANGE
    assert not result["passed"] and "worse mode" in result["reason"]
    same = export_module.compare(reference, Candidate(list(torch_names)), records)
    assert same["passed"] and same["macro_f1_change"] == 0.0


def test_a_variant_that_leaves_more_fp32_than_one_that_passed_is_not_tried():
    keeps = export_module.keeps_more_fp32
    bottom = "fused, smoothed, FFN output of the bottom half in fp32"
    both = "fused, smoothed, attention and the bottom half's FFN output in fp32"
    assert keeps(bottom, "fused, smoothed, every MatMul and the attention") and keeps(both, bottom)
    assert not keeps(bottom, both) and not keeps(bottom, bottom)
    assert keeps("per-channel, FFN and values in fp32", "per-channel")
    assert not keeps("per-channel, FFN and values in fp32", "per-channel, reduce_range")  # other options
    assert not keeps(bottom, "per-channel")  # another graph
    assert not keeps("static, per-channel, reduce_range", "per-channel, reduce_range")
