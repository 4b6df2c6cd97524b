"""`make bench-review`: the reviewer's loop measured through the service, on the served model.

1. POST /v1/explain on real paragraphs (with their heading paths): time per paragraph.
2. One retrain from the service, as the page runs it: reports of our own (docs/review-example.txt
   and the two test fixtures, 51 paragraphs) are labelled; every paragraph is stored through POST
   /v1/corrections with the label its own headings give (a correction where the model's label, read
   with its heading path or alone, differs; a confirmation elsewhere); POST /v1/retrain; the time
   until the new model serves; then how many corrected paragraphs take their corrected label, how
   many confirmed ones change, and how many of the real corpus's paragraphs (never stored) change,
   with its macro-F1 before and after. The model folder is a copy: the one served stays as it is.

Writes OUT/review.json and OUT/review.md.
usage: python -m bench.review --model DIR --corpus DIR --out DIR [--reports FILE…]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from renda.corpus import label_report_text, load_corpus
from renda.records import atomic_write_text, read_text_file
from renda.settings import get_settings
from serving.main import create_app
from model.metrics import macro_f1


def wait_ready(client: TestClient, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(client.get("/readyz").text)
        time.sleep(0.2)


def explain_latency(client: TestClient, corpus: list[str], limit: int) -> dict:
    records = load_corpus(corpus).records[:limit]
    client.post("/v1/explain", json={"text": records[0].text})  # warm-up
    seconds, parts = [], []
    for record in records:
        started = time.perf_counter()
        body = client.post("/v1/explain", json={"text": record.text, "heading_path": record.heading_path or []}).json()
        seconds.append(time.perf_counter() - started)
        parts.append(len(body["parts"]))
    seconds.sort()
    return {"paragraphs": len(records), "p50_s": round(statistics.median(seconds), 3),
            "p95_s": round(seconds[int(0.95 * (len(seconds) - 1))], 3), "max_s": round(seconds[-1], 3),
            "parts_mean": round(statistics.mean(parts), 2), "over_1s": sum(s > 1 for s in seconds)}


def labels(client: TestClient, rows: list, per_call: int = 128) -> tuple[list[str], list[str]]:
    """Each row's label with its heading path and alone (in calls within the request limit)."""
    with_path, alone = [], []
    for start in range(0, len(rows), per_call):
        chunk = rows[start: start + per_call]
        with_path += client.post("/v1/classify", json={"paragraphs": [
            {"text": r.text, "heading_path": r.heading_path or []} for r in chunk]}).json()["results"]
        alone += client.post("/v1/classify", json={"paragraphs": [r.text for r in chunk]}).json()["results"]
    return [r["label"] for r in with_path], [r["label"] for r in alone]


def retrain_loop(model_dir: Path, reports: list[Path], corpus: list[str], work: Path) -> dict:
    settings = get_settings().model_copy(update={
        "corrections_dir": work / "corrections", "build_dir": work / "build", "cache_size": 0, "admin_token": None})
    copy = work / "model"
    shutil.copytree(model_dir, copy)
    truth = [r for path in reports for r in label_report_text(read_text_file(path), path.stem)[0] if not r.is_heading]
    real = load_corpus(corpus).records
    with TestClient(create_app(settings, model_dir=copy)) as client:
        wait_ready(client)
        old = client.get("/v1/model").json()["model"]
        path_before, alone_before = labels(client, truth)
        real_path_before, real_alone_before = labels(client, real)
        corrected = [i for i, r in enumerate(truth) if path_before[i] != r.label or alone_before[i] != r.label]
        rows = [{"report_id": r.report_id, "text": r.text, "label": r.label, "heading": r.heading,
                 "heading_path": r.heading_path or [], "is_heading": False, "position": r.position} for r in truth]
        assert client.post("/v1/corrections", json={"records": rows}).status_code == 201
        started = time.monotonic()
        assert client.post("/v1/retrain").status_code == 202
        while (state := client.get("/v1/retrain").json())["status"] == "running":
            time.sleep(2)
        minutes = (time.monotonic() - started) / 60
        if state["status"] != "done":
            return {"status": state["status"], "message": state["message"], "minutes": round(minutes, 2)}
        path_after, alone_after = labels(client, truth)
        real_path_after, real_alone_after = labels(client, real)
    uncorrected = [i for i in range(len(truth)) if i not in corrected]
    gold = [r.label for r in real]
    return {
        "status": "done", "old_model": old, "new_model": state["new"]["model"], "minutes_to_serving": round(minutes, 2),
        "reports": [str(p) for p in reports], "stored_rows": len(rows), "paragraphs": len(truth), "corrected": len(corrected),
        "corrected_right_with_path_before": sum(path_before[i] == truth[i].label for i in corrected),
        "corrected_right_with_path_after": sum(path_after[i] == truth[i].label for i in corrected),
        "corrected_right_alone_before": sum(alone_before[i] == truth[i].label for i in corrected),
        "corrected_right_alone_after": sum(alone_after[i] == truth[i].label for i in corrected),
        "uncorrected": len(uncorrected),
        "uncorrected_changed_with_path": sum(path_after[i] != path_before[i] for i in uncorrected),
        "uncorrected_changed_alone": sum(alone_after[i] != alone_before[i] for i in uncorrected),
        "real_paragraphs": len(real),
        "real_changed_with_path": sum(a != b for a, b in zip(real_path_before, real_path_after)),
        "real_changed_alone": sum(a != b for a, b in zip(real_alone_before, real_alone_after)),
        "real_macro_f1_with_path": [round(macro_f1(gold, real_path_before), 4), round(macro_f1(gold, real_path_after), 4)],
        "real_macro_f1_alone": [round(macro_f1(gold, real_alone_before), 4), round(macro_f1(gold, real_alone_after), 4)],
        "held_out_old": state["old"]["held_out_metrics"].get("macro_f1"),
        "held_out_new": state["new"]["held_out_metrics"].get("macro_f1"),
    }


def markdown(result: dict) -> str:
    e, r = result["explain"], result["retrain"]
    lines = [f"POST /v1/explain, {e['paragraphs']} real paragraphs with their heading paths: p50 {e['p50_s']} s, "
             f"p95 {e['p95_s']} s, max {e['max_s']} s ({e['over_1s']} over 1 s; {e['parts_mean']} parts left out on average).", ""]
    if r.get("status") != "done":
        return "\n".join(lines + [f"Retrain {r.get('status')}: {r.get('message')}"]) + "\n"
    lines += [f"Retrain from the service: {r['minutes_to_serving']} min from POST /v1/retrain to {r['new_model']} serving "
              f"(was {r['old_model']}).", "",
              "| rows stored | corrected | of them right before (path / alone) | right after (path / alone) | "
              "confirmed | confirmed that changed (path / alone) |", "|---|---|---|---|---|---|",
              f"| {r['stored_rows']} | {r['corrected']} | {r['corrected_right_with_path_before']} / {r['corrected_right_alone_before']} | "
              f"{r['corrected_right_with_path_after']} / {r['corrected_right_alone_after']} | {r['uncorrected']} | "
              f"{r['uncorrected_changed_with_path']} / {r['uncorrected_changed_alone']} |", "",
              f"The {r['real_paragraphs']} paragraphs of the real corpus (never stored): {r['real_changed_with_path']} changed "
              f"label with their heading path, {r['real_changed_alone']} alone; macro-F1 with the path "
              f"{r['real_macro_f1_with_path'][0]} → {r['real_macro_f1_with_path'][1]}, alone "
              f"{r['real_macro_f1_alone'][0]} → {r['real_macro_f1_alone'][1]}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--corpus", nargs="+", default=["../shared/corpus"])
    parser.add_argument("--reports", type=Path, nargs="+", default=[Path("docs/review-example.txt"), Path("tests/fixtures/sample_report.txt"),
                                                                   Path("tests/fixtures/browser_report.txt")], help="reports of our own, all stored")
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    parser.add_argument("--limit", type=int, default=100, help="paragraphs explained (default %(default)s)")
    args = parser.parse_args()
    settings = get_settings().model_copy(update={"cache_size": 0})
    with tempfile.TemporaryDirectory() as work:
        with TestClient(create_app(settings, model_dir=args.model)) as client:
            wait_ready(client)
            explained = explain_latency(client, args.corpus, args.limit)
        print(json.dumps({"explain": explained}), flush=True)
        retrained = retrain_loop(args.model, args.reports, args.corpus, Path(work))
    result = {"model": str(args.model), "explain": explained, "retrain": retrained}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "review.json", json.dumps(result, ensure_ascii=False, indent=2))
    atomic_write_text(args.out / "review.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
