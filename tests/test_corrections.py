"""POST /v1/corrections: reviewed labels stored as training rows, one append-only JSONL file per
report, every row checked before anything is written; and the corpus reads them back so that the
next `make train` learns them (the latest correction of a paragraph winning)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from renda.corpus import corpus_files, load_corpus
from renda.records import read_jsonl
from renda.settings import ROOT, Settings
from serving.corrections import correction_file
from serving.main import create_app
from serving.validation import InputProblem
from tests.conftest import STARTER
from tests.test_service import Recording, settings, wait_ready

PATH = ["过去一年的主要工作", "二、聚焦发展大局，推动县委部署落地见效"]
ROW = {"report_id": "baisha-county-2024", "text": "听取审议县政府关于优化营商环境工作情况的报告，开展专题询问。",
       "label": "supervision", "heading": PATH[-1], "heading_path": PATH, "is_heading": False, "position": 10}


@contextmanager
def corrections_client(folder: Path):
    """The real app with its corrections folder in the test's tmp dir (no model needed for this route)."""
    with TestClient(create_app(settings(corrections_dir=folder), load=Recording), raise_server_exceptions=False) as c:
        wait_ready(c, timeout=10)
        yield c


def files(folder: Path) -> dict[str, bytes]:
    """Everything under the folder (hidden temporary files too), so "nothing written" is checked fully."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def post(client: TestClient, rows: list[dict]):
    return client.post("/v1/corrections", json={"records": rows})


def test_good_rows_are_stored_as_a_training_file(tmp_path):
    folder = tmp_path / "corrections"
    second = {**ROW, "text": "审议通过县级预算审查监督办法。", "label": "legislation", "position": 11}
    with corrections_client(folder) as client:
        response = post(client, [ROW, second])
    assert response.status_code == 201, response.text
    assert response.json() == {"stored": 2, "reports": {"baisha-county-2024": 2}}
    assert sorted(files(folder)) == ["baisha-county-2024.jsonl"]
    records = read_jsonl(folder / "baisha-county-2024.jsonl")  # the project's own reader accepts it
    assert [(r.report_id, r.text, r.label, r.heading, r.heading_path, r.is_heading, r.position) for r in records] == [
        tuple(row[k] for k in ("report_id", "text", "label", "heading", "heading_path", "is_heading", "position"))
        for row in (ROW, second)]
    stored = [json.loads(line) for line in (folder / "baisha-county-2024.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(row["corrected_at"] for row in stored)  # when, for the record; readers ignore the key


def test_a_line_separator_inside_a_text_is_stored_so_training_reads_it_back(tmp_path):
    """U+2028/2029 are no control characters, so they pass; written raw they would end the JSONL line
    for readers that split at them (str.splitlines did, and every later retrain then failed)."""
    folder = tmp_path / "corrections"
    row = {**ROW, "text": "听取审议县政府专项工作报告，\u2028督促整改问题。", "heading": "二、聚焦发展大局\u2029推动落实"}
    with corrections_client(folder) as client:
        assert post(client, [row]).status_code == 201
    stored = (folder / "baisha-county-2024.jsonl").read_text(encoding="utf-8")
    assert len(stored.splitlines()) == 1 and "\\u2028" in stored
    [record] = read_jsonl(folder / "baisha-county-2024.jsonl")
    assert (record.text, record.heading) == (row["text"], row["heading"])
    (folder / "raw.jsonl").write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")  # as another tool may write it
    assert read_jsonl(folder / "raw.jsonl")[0].text == row["text"]


def test_rows_are_appended_and_the_latest_correction_wins(tmp_path):
    folder = tmp_path / "corrections"
    other = {**ROW, "report_id": "另一份报告-2023", "text": "组织代表开展集中视察。", "label": "deputy"}
    with corrections_client(folder) as client:
        assert post(client, [ROW]).status_code == 201
        first = (folder / "baisha-county-2024.jsonl").read_bytes()
        response = post(client, [{**ROW, "label": "plans"}, other])  # a second thought, and another report
    assert response.status_code == 201 and response.json()["reports"] == {"baisha-county-2024": 1, "另一份报告-2023": 1}
    now = (folder / "baisha-county-2024.jsonl").read_bytes()
    assert now.startswith(first) and now.count(b"\n") == 2  # append-only: the first line is untouched
    assert sorted(files(folder)) == ["baisha-county-2024.jsonl", "另一份报告-2023.jsonl"]
    corpus = load_corpus([folder])
    assert {r.text: r.label for r in corpus.records} == {ROW["text"]: "plans", other["text"]: "deputy"}


BAD_IDS = ["../x", "a/b", "", "x" * 101, "青" * 67, ".hidden", "..", "a\\b", "报告 2024", "/etc/passwd", "a\x00b", "~root", "-"]


def test_the_longest_chinese_report_id_is_a_file(tmp_path):
    folder = tmp_path / "corrections"
    with corrections_client(folder) as client:
        response = post(client, [{**ROW, "report_id": "青" * 66}])  # 198 bytes: inside the budget, written
    assert response.status_code == 201, response.text
    assert list(files(folder)) == ["青" * 66 + ".jsonl"]


@pytest.mark.parametrize("report_id", BAD_IDS)
def test_report_ids_that_are_not_plain_file_names_are_refused(tmp_path, report_id):
    folder = tmp_path / "corrections"
    with corrections_client(folder) as client:
        response = post(client, [ROW, {**ROW, "report_id": report_id}])
    assert 400 <= response.status_code < 500, response.text
    assert "records[1].report_id" in response.json()["detail"]
    assert files(tmp_path) == {}  # nothing written anywhere, the good first row neither
    with pytest.raises(InputProblem):
        correction_file(folder, report_id)


@pytest.mark.parametrize("change, field, fragment", [
    ({"label": "budget"}, "records[1].label", "unknown label"),
    ({"label": None}, "records[1].label", ""),
    ({"text": "   "}, "records[1].text", "empty"),
    ({"text": "Annual report, part two."}, "records[1].text", "no Chinese"),
    ({"text": "审议\u0007通过"}, "records[1].text", "control character"),
    ({"heading": "二、\u0000监督"}, "records[1].heading", "control character"),
    ({"heading_path": ["一", "二", "三", "四", "五", "六", "七"]}, "records[1].heading_path", ""),
    ({"heading_path": ["一、" + "长" * 300]}, "records[1].heading_path[0]", ""),
    ({"position": -1}, "records[1].position", ""),
    ({"is_heading": "maybe"}, "records[1].is_heading", ""),
    ({"is_heading": "true"}, "records[1].is_heading", ""),
    ({"position": "5"}, "records[1].position", ""),
    ({"score": 0.9}, "records[1].score", "Extra inputs"),
])
def test_a_bad_row_stores_nothing(tmp_path, change, field, fragment):
    folder = tmp_path / "corrections"
    with corrections_client(folder) as client:
        assert post(client, [ROW]).status_code == 201
        before = files(folder)
        response = post(client, [{**ROW, "text": "另一段正文。"}, {**ROW, **change}])
    assert response.status_code == 422, response.text
    body = response.json()
    assert field in body["detail"] and fragment in body["detail"], body
    assert files(folder) == before


def test_missing_fields_and_empty_requests(tmp_path):
    folder = tmp_path / "corrections"
    with corrections_client(folder) as client:
        for body in ({"records": []}, {}, {"records": [{k: v for k, v in ROW.items() if k != "label"}]},
                     {"records": [{k: v for k, v in ROW.items() if k != "report_id"}]}, {"records": [ROW], "extra": 1}):
            response = client.post("/v1/corrections", json=body)
            assert response.status_code == 422, (body, response.text)
        assert client.post("/v1/corrections", content=b'{"records": [', headers={"content-type": "application/json"}).status_code == 400
        assert client.post("/v1/corrections", content=json.dumps({"records": [ROW]}), headers={"content-type": "text/plain"}).status_code == 415
    assert files(tmp_path) == {}


def test_the_corrections_folder_is_a_setting(monkeypatch, tmp_path):
    assert Settings().corrections_dir == ROOT / "data" / "corrections"
    monkeypatch.setenv("CORRECTIONS_DIR", str(tmp_path / "elsewhere"))
    assert Settings().corrections_dir == tmp_path / "elsewhere"
    assert "data/corrections/" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()


# --- back into training: the corpus reads corrections before the reports they correct -----------


def test_corrections_win_over_the_starter_report_they_correct(tmp_path):
    starter = load_corpus([STARTER]).records
    victim = next(r for r in starter if not r.is_heading and r.label == "supervision")
    folder = tmp_path / "corrections"
    with corrections_client(folder) as client:
        row = {"report_id": victim.report_id, "text": victim.text, "label": "plans", "heading": victim.heading,
               "heading_path": victim.heading_path, "is_heading": False, "position": victim.position}
        assert post(client, [row]).status_code == 201
    for corpus in ([STARTER, folder], [folder, STARTER]):  # JSONL is read first whatever the order
        records = load_corpus(corpus).records
        [found] = [r for r in records if r.text == victim.text]
        assert found.label == "plans" and found.report_id == victim.report_id
        assert len(records) == len(starter)  # the starter copy is dropped, nothing else


def test_of_two_labelled_corpora_the_one_named_first_wins(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for folder, label in ((one, "plans"), (two, "deputy")):
        folder.mkdir()
        (folder / "z.jsonl" if folder == one else folder / "a.jsonl").write_text(
            json.dumps({**ROW, "label": label}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert [p.parent.name for p in corpus_files([one, two])] == ["one", "two"]
    assert load_corpus([one, two]).records[0].label == "plans"
    assert load_corpus([two, one]).records[0].label == "deputy"


def test_correction_reports_always_train(tmp_path):
    from training.dataset import assign_splits

    records = load_corpus([STARTER]).records
    plain = assign_splits(records, 13, 0.15, 0.2)
    held_out = sorted(r for r, split in plain.items() if split != "train")
    forced = assign_splits(records, 13, 0.15, 0.2, train_only=set(held_out[:2]))
    assert all(forced[r] == "train" for r in held_out[:2])
    assert {s for s in forced.values()} == {"train", "dev", "test"}
    assert assign_splits(records, 13, 0.15, 0.2, train_only=None) == plain  # unchanged without it
