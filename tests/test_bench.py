"""`make bench` and `make bench-load` on the tiny model and a handful of paragraphs: the figures and
files they write, and the load tool against a real `renda serve` on loopback for a few seconds."""

from __future__ import annotations

import json
import random
import shutil

import pytest

from bench import predict as bench_predict
from bench import load as bench_load
from tests.conftest import STARTER

SHORT = ["制定条例两件。", "听取审议专项工作报告。", "加强代表联络站建设。", "坚持党的领导。"]
LONG = ["依法开展执法检查，听取审议专项工作报告，推动问题整改落实。" * 6, "组织代表开展集中视察活动三次，邀请代表列席常委会会议四十人次。" * 4]
LABELLED = ["legislation", "supervision", "deputy", "leadership", "supervision", "deputy"]


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """Six labelled paragraphs (four fit one tiny window, two do not) and the same report twice,
    so the second report is answered from the cache."""
    folder = tmp_path_factory.mktemp("corpus")
    rows = [{"report_id": "bench-test", "text": t, "label": l, "heading_path": ["一、过去一年的主要工作"] if i % 2 else []}
            for i, (t, l) in enumerate(zip(SHORT + LONG, LABELLED))]
    (folder / "paragraphs.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    report = sorted(STARTER.glob("*.txt"))[0]
    shutil.copy(report, folder / "a-report.txt")
    shutil.copy(report, folder / "b-same-report.txt")
    return folder


def test_bench_compares_the_plain_code_with_every_backend(tiny_onnx_model, small_corpus, tmp_path):
    out = tmp_path / "bench"
    result = bench_predict.run(tiny_onnx_model, [str(small_corpus)], out, threads=1, limit=6)
    rows = result["rows"]
    codes = [bench_predict.PLAIN, "renda torch", "renda onnx", "renda onnx-fused", "renda onnx-int8",
             "renda onnx-int8, shared batches"]  # int8 as served (each window apart) and batched, to price it
    threshold = bench_predict.served_threshold(tiny_onnx_model)
    assert threshold is not None  # the export chose one: the rows read as the service reads
    served = result["profile"][0]["backend"]
    codes.append(f"renda {served}, every window")  # and the served backend once more, every window read
    assert [(r["code"], r["batch"]) for r in rows] == [(c, b) for c in codes for b in (1, 8, 32)]
    assert {r["windows"] for r in rows[3:-3]} == {f"first, rest below {threshold:g}"}
    assert {r["windows"] for r in rows[-3:]} == {"every window"}
    for row in rows:
        assert row["paragraphs"] == 6 and row["threads"] == 1 and row["paragraphs_per_second"] > 0
        assert 0 < row["latency_ms_p50"] <= row["latency_ms_p95"] and row["peak_rss_mb"] > 0
        assert 0 <= row["agreement"] <= 1 and 0 <= row["macro_f1"] <= 1
    assert result["fit_one_window"] == 4
    for row in rows:  # where both read the same tokens, fp32 gives the plain code's labels
        if row["code"] in (bench_predict.PLAIN, "renda torch", "renda onnx", "renda onnx-fused"):
            assert row["agreement_one_window"] == 1.0, row
    assert {r["parity"] for r in rows if r["code"].startswith("renda onnx")} <= {"passed", "FAILED (not served)"}
    cache = result["cache"]
    assert cache["reports"] == 2 and cache["hits"] > 0 and cache["misses"] > 0  # the second report: all hits
    assert 0.3 < cache["hit_rate"] <= 0.5 and cache["backend"] in ("torch", "onnx", "onnx-fused", "onnx-int8")
    written = json.loads((out / "predict.json").read_text())
    assert written["rows"] == rows and "| code |" in (out / "predict.md").read_text()
    assert (out / "predict.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "predict.md").read_text().splitlines()
    assert len(table) == 2 + len(rows) and len(set(table)) == len(table)  # one line a row, none repeated
    # The profile of the served backend: the shares add up, every paragraph's windows are counted.
    profile = result["profile"]
    assert [p["batch"] for p in profile] == [1, 32] and {p["backend"] for p in profile} <= {"torch", "onnx", "onnx-fused", "onnx-int8"}
    for p in profile:
        assert p["tokenize_s"] > 0 and p["model_s"] > 0 and p["windows"] >= 6 and p["model_batches"] >= 1
        assert abs(p["tokenize_share"] + p["model_share"] + p["other_share"] - 1) < 0.01
        assert 0 <= p["padding_share"] < 1
    assert profile[0]["padding_share"] <= profile[1]["padding_share"]  # one paragraph a call pads least
    assert "| backend | batch |" in (out / "profile.md").read_text()


def test_bench_reads_every_window_when_the_service_would(tiny_onnx_model, monkeypatch):
    assert bench_predict.served_threshold(tiny_onnx_model) is not None
    monkeypatch.setenv("FIRST_WINDOW", "false")
    assert bench_predict.served_threshold(tiny_onnx_model) is None
    found = bench_predict.project_predictors(tiny_onnx_model, 1, 256)
    loaded = [load() for _, _, load in found]
    assert loaded and all(p.first_window_threshold is None for p in loaded)
    assert {name: p.rows_apart for (name, _, _), p in zip(found, loaded) if "int8" in name} == {
        "onnx-int8": True, "onnx-int8, shared batches": False}


def test_bench_int8_quantises_each_part_of_a_layer_alone(tiny_onnx_model, small_corpus, tmp_path):
    from collections import Counter

    from bench import int8_roles
    from model.onnx_backend import matmul_roles

    out = tmp_path / "int8"
    assert int8_roles.main(["--model", str(tiny_onnx_model), "--data", str(small_corpus / "paragraphs.jsonl"),
                            "--threads", "1", "--out", str(out)]) == 0
    result = json.loads((out / "int8_roles.json").read_text())
    rows = result["rows"]
    counts = Counter(matmul_roles(tiny_onnx_model / "model.onnx").values())
    assert [r["quantised"] for r in rows] == ["none (fp32)"] + [f"{role} only" for role in int8_roles.ROLES] + ["every part"]
    assert [r["matmuls"] for r in rows] == [0] + [counts[role] for role in int8_roles.ROLES] + [sum(counts.values())]
    assert result["checked_on"]["predictions"] == 2 * len(SHORT + LONG)
    for row in rows[1:]:
        assert 0 <= row["agreement"] <= 1 and row["max_logit_diff"] >= row["mean_logit_diff"] > 0 and row["paragraphs_per_second"] > 0
    assert len((out / "int8_roles.md").read_text().splitlines()) == 2 + len(rows)
    assert set(rows[1]["macro_f1_change"]) == {"path", "alone"}  # each mode, as the export checks


def test_bench_int8_fused_tries_each_plan_on_the_smoothed_fused_graph(tiny_onnx_model, small_corpus, tmp_path):
    from bench import int8_roles
    from model.onnx_backend import fp32_nodes, matmul_roles

    out = tmp_path / "int8-fused"
    assert int8_roles.main(["--model", str(tiny_onnx_model), "--data", str(small_corpus / "paragraphs.jsonl"),
                            "--threads", "1", "--smooth", "0.75", "--out", str(out)]) == 0
    result = json.loads((out / "int8_roles_fused.json").read_text())
    assert result["compared_with"] == "model.fused.onnx"
    roles = matmul_roles(tiny_onnx_model / "model.fused.onnx")
    rows = result["rows"][1:]
    assert [r["quantised"] for r in rows] == [f"alpha 0.75: {name}" for name, _ in int8_roles.FUSED_PLANS]
    assert [r["matmuls"] for r in rows] == [len(roles) - len(fp32_nodes(roles, parts)) for _, parts in int8_roles.FUSED_PLANS]
    assert rows[0]["matmuls"] == len(roles) and all(0 <= r["agreement"] <= 1 and r["paragraphs_per_second"] > 0 for r in rows)
    assert len((out / "int8_roles_fused.md").read_text().splitlines()) == 2 + len(rows) + 1


def test_the_load_mix():
    mix = bench_load.Mix([(t, ["今后工作建议"]) for t in SHORT], ["一份报告。"], "test")
    rng = random.Random(1)
    drawn = [mix.request(rng) for _ in range(4000)]
    reports = [d for d in drawn if d[0] == "report"]
    assert 0.035 < len(reports) / len(drawn) < 0.065 and all(d[1] == "/v1/reports" for d in reports)
    sizes = {len(d[2]["paragraphs"]) for d in drawn if d[0] != "report"}
    assert sizes == {1, 2, 3, 4} and all((d[0] == "single") == (len(d[2]["paragraphs"]) == 1) for d in drawn if d[0] != "report")
    objects = [p for d in drawn if d[0] != "report" for p in d[2]["paragraphs"] if isinstance(p, dict)]
    assert objects and all(p["heading_path"] == ["今后工作建议"] for p in objects)
    assert bench_load.is_loopback("http://127.0.0.1:8000") and bench_load.is_loopback("http://localhost:1")
    assert bench_load.is_loopback("http://[::1]:8000")
    assert not bench_load.is_loopback("http://10.0.0.1:8000") and not bench_load.is_loopback("http://localhost.example.com")
    with pytest.raises(ValueError, match="loopback"):
        bench_load.run(url="http://192.168.1.10:8000")


def test_the_load_tool_against_the_tiny_model(tiny_model, small_corpus, tmp_path):
    out = tmp_path / "load.json"
    result = bench_load.run(tiny_model, clients=4, seconds=3, warmup=0.5, corpus=small_corpus, timeout=30, out=out)
    assert result["errors"] == 0 and result["error_samples"] == []
    assert result["requests"] > 0 and result["requests_per_second"] > 0 and result["paragraphs_per_second"] > 0
    assert result["seconds"] >= 3 and result["backend"] == "torch" and result["cache_size"] == 0
    assert result["scenario"] == "stress" and result["roles"] == {"mixed": 4} and result["queue_bound"] > 0
    assert result["server_errors"] == result["timeouts"] == 0 and result["readyz_max_ms"] > 0
    latency = result["latency"]
    assert latency["count"] == result["requests"] and latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]
    assert result["latency_single_paragraph"]["count"] + result["latency_2_to_4_paragraphs"]["count"] \
        + result["latency_whole_report"]["count"] == result["requests"]
    assert result["mix"]["reports"] == 2 and result["mix"]["paragraphs"] > 0
    assert result["rss_mb_after_warmup"] > 0 and result["rss_mb_after"] > 0 and result["rss_growth"] is not None
    assert json.loads(out.read_text()) == result


def test_the_interactive_scenario_posts_paragraphs_beside_whole_reports(tiny_model, small_corpus, tmp_path):
    result = bench_load.run(tiny_model, seconds=3, warmup=0.5, corpus=small_corpus, timeout=30, scenario="interactive")
    assert result["roles"] == {"paragraphs": 8, "reports": 2} and result["clients"] == 10
    assert result["errors"] == 0 and result["latency_whole_report"]["count"] > 0 and result["latency_single_paragraph"]["count"] > 0
    with pytest.raises(ValueError, match="unknown scenario"):
        bench_load.roles_of("weekend", 4)


def test_every_text_the_load_sends_is_new():
    mix = bench_load.Mix([(t, ["今后工作建议"]) for t in SHORT], [], "test")
    rng = random.Random(3)
    sent = [p for _ in range(50) for p in mix.request(rng, "paragraphs")[2]["paragraphs"]]
    texts = [p if isinstance(p, str) else p["text"] for p in sent]
    assert len(texts) == len(set(texts))  # the cache could answer none of them


def test_the_codes_take_turns_chunk_by_chunk():
    """Each code reads every paragraph once, in corpus order, `batch` a call; the codes take turns
    every chunk, the order rotating, so a slow spell of the machine falls on all of them."""
    log = []

    def code(name):
        def predict(texts, contexts):
            log.append((name, texts[0]))
            return [name] * len(texts)
        return predict

    texts = [f"段落{i}" for i in range(10)]
    result = bench_predict.run_interleaved({"a": code("a"), "b": code("b")}, texts, [[]] * 10, batch=2, chunk=4, warmup_calls=1)
    timed = log[2:]  # after one warm-up call each
    assert [t for n, t in timed if n == "a"] == [t for n, t in timed if n == "b"] == texts[::2]
    assert [n for n, _ in timed] == list("aabb" "bbaa" "ab")  # chunks of 4 paragraphs (2 calls), then the last 2
    assert {r["paragraphs"] for r in result.values()} == {10} and result["a"]["labels"] == ["a"] * 10


def _scores_file(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_cv_ensemble_averages_members_paragraph_by_paragraph(tmp_path):
    """Two members that each miss a different paragraph, one of them only narrowly: their average
    gets both right, and each member's own figure is reported beside it."""
    from bench import cv_scores as cv_ensemble

    def row(i, label, alone):
        scores = {"plans": alone, "deputy": 1 - alone}
        return {"report_id": "r", "index": i, "fold": 0, "label": label, "alone": scores, "path": scores, "report_label": label}

    a = _scores_file(tmp_path / "bert-seed=1-cv-scores.jsonl", [row(0, "plans", 0.9), row(1, "deputy", 0.6)])
    b = _scores_file(tmp_path / "bert-seed=2-cv-scores.jsonl", [row(0, "plans", 0.45), row(1, "deputy", 0.1)])
    result = cv_ensemble.run([a, b], tmp_path / "out")
    table = result["macro_f1"]
    assert table["bert-seed=1"]["alone"] < 1 and table["bert-seed=2"]["alone"] < 1
    assert table["bert-seed=1"]["report"] == 1.0  # each member's own whole-report labels
    assert table["average of all"] == {"alone": 1.0, "path": 1.0, "report": None}
    assert "| average of all | 1.000 | 1.000 | **1.000** | - |" in (tmp_path / "out" / "cv_ensemble.md").read_text(encoding="utf-8")


def test_cv_ensemble_refuses_files_of_different_folds(tmp_path):
    from bench import cv_scores as cv_ensemble

    scores = {"plans": 1.0}
    first = {"report_id": "r", "index": 0, "fold": 0, "label": "plans", "alone": scores, "path": scores, "report_label": "plans"}
    a = _scores_file(tmp_path / "a.jsonl", [first])
    b = _scores_file(tmp_path / "b.jsonl", [{**first, "report_id": "other"}])
    with pytest.raises(ValueError, match="same paragraphs"):
        cv_ensemble.run([a, b], tmp_path / "out")


def test_cv_ceiling_counts_one_confusion_after_another_right(tmp_path, capsys):
    from bench import cv_scores

    def row(i, label, predicted):
        scores = {l: (0.9 if l == predicted else 0.02) for l in ("plans", "deputy", "leadership", "self_building")}
        return {"report_id": "r", "index": i, "fold": 0, "label": label, "alone": scores, "path": scores, "report_label": label}

    rows = [row(0, "plans", "deputy"), row(1, "deputy", "plans"), row(2, "self_building", "leadership"),
            row(3, "deputy", "deputy"), row(4, "leadership", "deputy"), row(5, "self_building", "self_building")]
    path = _scores_file(tmp_path / "s.jsonl", rows)
    assert cv_scores.main(["ceiling", path, "--solve", "plans", "--solve", "self_building/leadership", "--out", str(tmp_path / "o")]) == 0
    steps = json.loads((tmp_path / "o" / "cv_ceiling.json").read_text())["steps"]
    assert [s["misses"] for s in steps] == [4, 2, 1]  # leadership called deputy is no confusion of either group
    assert steps[0]["macro_f1"] < steps[1]["macro_f1"] < steps[2]["macro_f1"] < 1
    # P(plans) is 0.9 for the deputy paragraph called plans, 0.02 for the plans paragraph: ranked last of the six
    assert json.loads((tmp_path / "o" / "cv_ceiling.json").read_text())["average_precision"]["plans"] == pytest.approx(1 / 6, abs=1e-3)
    with pytest.raises(SystemExit):
        cv_scores.main(["ceiling", path, "--solve", "legislation", "--out", str(tmp_path / "o")])
    assert "no paragraph is labelled or predicted legislation" in capsys.readouterr().err


def test_cv_judge_refits_the_judge_per_fold_and_judges_the_scores_alone(tmp_path, capsys):
    """An encoder that calls every paragraph alone `deputy`: the judge, refitted on each fold's other
    reports (written here: plans paragraphs say 明年将, the others 一年来), takes the plans paragraphs
    back; a file scored on other folds is refused."""
    from bench import cv_scores
    from renda.corpus import load_corpus
    from training.config import load_config
    from training.evaluate import report_folds

    lines = []
    for n in range(6):
        lines += [{"report_id": f"r{n}", "text": f"一年来，常委会走访代表{n + 3}次，办理建议{n + 20}件。", "label": "deputy"},
                  {"report_id": f"r{n}", "text": f"一年来，常委会听取审议专项报告{n + 4}个。", "label": "supervision"},
                  {"report_id": f"r{n}", "text": f"明年，常委会将进一步密切同代表的联系，将做好第{n + 1}项工作。", "label": "plans"}]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    folds = report_folds(load_corpus([corpus]).records, 3, 13)
    fold_of = {report: k for k, group in enumerate(folds) for report in group}
    sure = {"deputy": 0.8, "supervision": 0.15, "plans": 0.05}
    rows = [{"report_id": line["report_id"], "index": i % 3, "fold": fold_of[line["report_id"]], "label": line["label"],
             "alone": sure, "path": sure, "report_label": line["label"]} for i, line in enumerate(lines)]
    path = _scores_file(tmp_path / "bert-seed=13-cv-scores.jsonl", rows)
    args = ["judge", path, "--corpus", str(corpus), "--folds", "3", "--units", "chars", "--out", str(tmp_path / "o")]
    assert cv_scores.main(args) == 0
    result = json.loads((tmp_path / "o" / "cv_judge.json").read_text(encoding="utf-8"))
    figures = result["alone"]["bert-seed=13"]
    assert figures["alone_as_scored"] < 0.3  # deputy everywhere
    assert figures["average_precision_plans_judged"] == 1.0 and figures["alone_judged"] > figures["alone_as_scored"]
    judge_weight = load_config().plans_judge_starter_weight  # the judge's own default, not the encoder's starter_weight
    assert result["judge"] == {"units": "chars", "C": 10.0, "starter_weight": judge_weight, "train_share": 1.0} and result["paragraphs"] == 18
    assert "| bert-seed=13 |" in (tmp_path / "o" / "cv_judge.md").read_text(encoding="utf-8")
    moved = _scores_file(tmp_path / "moved-cv-scores.jsonl", [{**rows[0], "fold": (rows[0]["fold"] + 1) % 3}, *rows[1:]])
    with pytest.raises(SystemExit):
        cv_scores.main([*args[:1], moved, *args[2:]])
    assert "not scored on these folds" in capsys.readouterr().err
    # a run trained on a share of its reports: the judge takes the share its folds.json records
    (tmp_path / "folds.json").write_text(json.dumps({"folds": folds, "train_share": 0.5}), encoding="utf-8")
    assert cv_scores.main(args) == 0
    assert json.loads((tmp_path / "o" / "cv_judge.json").read_text(encoding="utf-8"))["judge"]["train_share"] == 0.5
    assert "note" not in json.loads((tmp_path / "o" / "cv_judge.json").read_text(encoding="utf-8"))  # no extra_train recorded
    # a judge trained beside other extra corpora than the run's encoder: allowed, and said
    (tmp_path / "folds.json").write_text(json.dumps({"folds": folds, "extra_train": ["elsewhere"]}), encoding="utf-8")
    assert cv_scores.main(args) == 0
    note = json.loads((tmp_path / "o" / "cv_judge.json").read_text(encoding="utf-8"))["note"]
    assert "--extra-train elsewhere" in note and "this judge with (none)" in note
    assert note in (tmp_path / "o" / "cv_judge.md").read_text(encoding="utf-8")
    (tmp_path / "folds.json").write_text(json.dumps({"folds": folds, "extra_train": []}), encoding="utf-8")
    assert cv_scores.main(args) == 0
    assert "note" not in json.loads((tmp_path / "o" / "cv_judge.json").read_text(encoding="utf-8"))
    (tmp_path / "folds.json").write_text("{", encoding="utf-8")
    with pytest.raises(SystemExit):
        cv_scores.main(args)
    assert "folds.json: cannot read its train_share" in capsys.readouterr().err
