"""`make export` / `renda export`: a trained BERT folder's ONNX copies, checked against torch.

Writes model.onnx (fp32), model.fused.onnx (the same as ONNX Runtime's fused BERT operators, fp32)
and model.int8.onnx (int8: every variant of INT8_VARIANTS is tried and the fastest that passes
kept, all recorded) into the folder, then checks each
against the fp32 torch model on the dev split of the model's dataset (or on paragraphs given):
label agreement ≥ 0.995 and macro-F1 within 0.005 in each mode, each paragraph predicted with and
without its heading path (both uses the service has). The results, with the largest logit difference and each
backend's speed, go to onnx_parity.json; BACKEND=auto serves the fastest backend that passed. An
export that fails is recorded as failed and never served.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from model.backends import PARITY_FILE, TORCH, read_parity
from model.bert import BertPredictor, WindowedPredictor, softmax
from model.context import path_text
from model.metrics import macro_f1
from model.onnx_backend import INT8_VARIANTS, ONNX_FILES, OnnxPredictor, export_fp32, export_fused_fp32, quantize_int8
from model.predictor import Prediction, read_meta
from renda.records import DataError, Record, atomic_write_text

MIN_AGREEMENT = 0.995  # share of labels the export must give as torch does
MAX_F1_CHANGE = 0.005  # |macro-F1 of the export − macro-F1 of torch|, both against the gold labels, in each mode
THRESHOLDS = {"min_agreement": MIN_AGREEMENT, "max_macro_f1_change": MAX_F1_CHANGE, "macro_f1_per_mode": True}
SPEED_CALL = 32  # paragraphs per predict call when timing each backend


def parity_records(model_dir: Path, meta: dict, data: list[str] | None) -> tuple[list[Record], str]:
    """The paragraphs to check on, and where they came from: `data` (a dataset folder, whose dev
    split is used, or report folders / labelled JSONL), else the dev split of the model's dataset."""
    from renda.corpus import load_corpus
    from training.dataset import SUMMARY_FILE, load_split

    if data:
        if len(data) == 1 and (Path(data[0]) / SUMMARY_FILE).is_file():
            return load_split(Path(data[0]), "dev"), f"dev split of {data[0]}"
        return load_corpus(data).records, " ".join(map(str, data))
    dataset = meta.get("dataset")
    if not dataset or not (Path(dataset) / "dev.jsonl").is_file():
        raise DataError(model_dir, f"the model's dataset ({dataset or 'not recorded'}) is not here to check parity on; "
                                   "give paragraphs with --data (a dataset folder, report folders or labelled JSONL)")
    return load_split(Path(dataset), "dev"), f"dev split of {dataset}"


def predict_both(predictor: WindowedPredictor, records: list[Record]) -> tuple[list[Prediction], float]:
    """Predictions with the heading path, then without; and paragraphs/s of the first pass
    (calls of SPEED_CALL paragraphs, after one warm-up call)."""
    texts, contexts = [r.text for r in records], [r.heading_path or [] for r in records]
    predictor.predict(texts[:SPEED_CALL], contexts[:SPEED_CALL])  # warm-up: first-call allocations
    started = time.perf_counter()
    with_path = [p for i in range(0, len(texts), SPEED_CALL)
                 for p in predictor.predict(texts[i: i + SPEED_CALL], contexts[i: i + SPEED_CALL])]
    speed = len(texts) / max(time.perf_counter() - started, 1e-9)
    return with_path + predictor.predict(texts), speed


SPEED_SAMPLE, SPEED_ROUNDS = 64, 3  # paragraphs and rounds of the alternating timing


def speed_ratio(candidate: WindowedPredictor, baseline: WindowedPredictor, records: list[Record]) -> float:
    """How many times faster `candidate` reads than `baseline`: the median of SPEED_ROUNDS rounds,
    each timing both on the same SPEED_SAMPLE paragraphs (with their paths, SPEED_CALL a call), one
    after the other, so the machine's drift from minute to minute falls on both alike."""
    texts = [r.text for r in records[:SPEED_SAMPLE]]
    contexts = [r.heading_path or [] for r in records[:SPEED_SAMPLE]]

    def seconds(predictor: WindowedPredictor) -> float:
        predictor.predict(texts[:SPEED_CALL], contexts[:SPEED_CALL])  # warm-up
        started = time.perf_counter()
        for i in range(0, len(texts), SPEED_CALL):
            predictor.predict(texts[i: i + SPEED_CALL], contexts[i: i + SPEED_CALL])
        return time.perf_counter() - started

    ratios = sorted(seconds(baseline) / max(seconds(candidate), 1e-9) for _ in range(SPEED_ROUNDS))
    return ratios[len(ratios) // 2]


def predictions_f1(gold: list[str], predictions: list[Prediction]) -> float:
    return macro_f1(gold, [p.label for p in predictions])


def reference_logits(predictor: WindowedPredictor, records: list[Record]) -> tuple[list, np.ndarray]:
    """Every window the paragraphs are read in with their paths, and the reference model's logits
    for them: computed once, compared with each export."""
    windows = predictor.pairs.windows([path_text(r.heading_path) for r in records], [r.text for r in records], predictor.stride)
    return windows, predictor.window_scores(windows)


def mode_f1(gold: list[str], labels: list[str]) -> dict[str, float]:
    """Macro-F1 of labels in predict_both's order in each mode: with the heading path (the first half), alone."""
    half = len(labels) // 2
    return {"path": macro_f1(gold[:half], labels[:half]), "alone": macro_f1(gold[half:], labels[half:])}


def compare(reference: dict, candidate: WindowedPredictor, records: list[Record]) -> dict:
    """Label agreement with torch, and the macro-F1 change in each mode: an export must keep both
    modes within MAX_F1_CHANGE (pooled, a loss alone could hide behind a gain with the path);
    `macro_f1_change` is the larger change of the two."""
    predictions, speed = predict_both(candidate, records)
    agreement = float(np.mean([a.label == b.label for a, b in zip(reference["predictions"], predictions)]))
    f1 = predictions_f1(reference["gold"], predictions)
    by_mode = {mode: value - reference["mode_f1"][mode]
               for mode, value in mode_f1(reference["gold"], [p.label for p in predictions]).items()}
    change = max(by_mode.values(), key=lambda v: (abs(v), -v))  # a loss before a gain of the same size
    passed = agreement >= MIN_AGREEMENT and abs(change) <= MAX_F1_CHANGE
    result = {"file": ONNX_FILES[candidate.backend], "passed": passed, "agreement": round(agreement, 4),
              "max_logit_diff": float(f"{np.abs(candidate.window_scores(reference['windows']) - reference['logits']).max():.3g}"),
              "macro_f1": round(f1, 4), "macro_f1_change": round(change, 4),
              "macro_f1_change_by_mode": {mode: round(value, 4) for mode, value in by_mode.items()},
              "paragraphs_per_second": round(speed, 2)}
    if not passed:
        result["reason"] = (f"{candidate.backend} failed the parity check at export: label agreement {agreement:.4f} "
                            f"(needs ≥ {MIN_AGREEMENT}), macro-F1 change {change:+.4f} in the worse mode "
                            f"(needs within ±{MAX_F1_CHANGE} in each)")
    return result


FIRST_WINDOW_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99)
FIRST_WINDOW_AGREEMENT = 0.995  # labels the first-window rule must keep, against reading every window
# The served backend may lose MAX_F1_CHANGE of torch's macro-F1 in all; int8 is checked against
# that, so the rule may cost next to nothing: their losses add up (docs/performance.md measured
# −0.009 with both at 0.005).
FIRST_WINDOW_MAX_F1_LOSS = 0.001


def choose_first_window(predictor: WindowedPredictor, records: list[Record], full: list[Prediction]) -> dict:
    """The lowest threshold (FIRST_WINDOW_GRID) at which reading a long paragraph's first window
    alone when its calibrated top score reaches it keeps ≥ FIRST_WINDOW_AGREEMENT of the labels that
    reading every window gives (`full`: with the heading path, then alone), on `records`, and loses
    no more than FIRST_WINDOW_MAX_F1_LOSS of macro-F1 in either mode (a few flipped labels of a
    small class weigh more than their share); how often the rest is still read, and the windows saved, per
    threshold. No long paragraph: no rule."""
    texts = [r.text for r in records]
    rows = []  # (index into full, the first window's label, its calibrated top score, windows of the paragraph)
    for offset, paths in ((0, [path_text(r.heading_path) for r in records]), (len(records), [""] * len(records))):
        windows = predictor.pairs.windows(paths, texts, predictor.stride)
        counts = np.bincount([owner for owner, _ in windows], minlength=len(texts))
        firsts = {}
        for owner, features in windows:
            firsts.setdefault(owner, features)
        long = [owner for owner in range(len(texts)) if counts[owner] > 1]
        probs = predictor.window_scores([(owner, firsts[owner]) for owner in long], softmax)
        tops = predictor.calibrated_tops(probs, [bool(paths[owner]) for owner in long])
        for owner, row, top in zip(long, probs, tops):
            rows.append((offset + owner, predictor.labels[int(row.argmax())], float(top), int(counts[owner])))
    if not rows:
        return {"threshold": None, "reason": "no paragraph longer than one window to choose on"}
    gold, labels = [r.label for r in records] * 2, [p.label for p in full]
    full_f1 = mode_f1(gold, labels)  # reading every window: what each threshold is measured against
    table = []
    for threshold in FIRST_WINDOW_GRID:
        ruled = list(labels)
        for i, label, top, _ in rows:
            if top >= threshold:
                ruled[i] = label
        changed = sum(a != b for a, b in zip(ruled, labels))
        f1_change = min(value - full_f1[mode] for mode, value in mode_f1(gold, ruled).items())
        read_all = [n for _, _, top, n in rows if top < threshold]
        table.append({"threshold": threshold, "agreement": round(1 - changed / len(full), 4),
                      "macro_f1_change": round(f1_change, 4),
                      "long_paragraphs_read_in_full": round(len(read_all) / len(rows), 4),
                      "windows_saved": round(1 - (sum(read_all) + len(rows) - len(read_all)) / sum(n for *_, n in rows), 4)})
    good = [t for t in table if t["agreement"] >= FIRST_WINDOW_AGREEMENT and t["macro_f1_change"] >= -FIRST_WINDOW_MAX_F1_LOSS]
    chosen = good[0] if good else None
    return {"threshold": chosen["threshold"] if chosen else None, "min_agreement": FIRST_WINDOW_AGREEMENT,
            "max_macro_f1_loss": FIRST_WINDOW_MAX_F1_LOSS, "long_paragraphs": len(rows), "predictions": len(full), "tried": table,
            **({} if chosen else {"reason": f"no threshold kept {FIRST_WINDOW_AGREEMENT} of the labels and the macro-F1 "
                                            f"of either mode within {FIRST_WINDOW_MAX_F1_LOSS}: every window is read"})}


def keeps_more_fp32(variant: str, other: str) -> bool:
    """`variant` is `other` with at least as much left fp32 (the same graph, smoothing and options;
    each of other's fp32 parts within variant's): never faster than `other`."""
    a, b = dict(INT8_VARIANTS[variant]), dict(INT8_VARIANTS[other])
    parts_a, parts_b = a.pop("fp32", {}), b.pop("fp32", {})
    return variant != other and a == b and not a.get("static") and all(
        role in parts_a and parts_a[role][0] <= lo and hi <= parts_a[role][1] for role, (lo, hi) in parts_b.items())


def is_current(model_dir: Path, meta: dict, source: str | None) -> bool:
    """An export of this very model, checked on the same paragraphs (`source`; None: on whatever it
    was) with today's int8 variants, thresholds and first-window budget, whose files are all there."""
    try:
        record = read_parity(model_dir)
    except ValueError:
        return False
    return bool(record) and record.get("model_id") == meta.get("model_id") and (
        source is None or record.get("checked_on", {}).get("source") == source) and (
        [v.get("variant") for v in record.get("int8_variants", [])] in ([], list(INT8_VARIANTS))) and (
        record.get("first_window", {}).get("max_macro_f1_loss", FIRST_WINDOW_MAX_F1_LOSS) == FIRST_WINDOW_MAX_F1_LOSS) and (
        record.get("thresholds") == THRESHOLDS) and all(
        (model_dir / result["file"]).is_file() for result in record["backends"].values() if result.get("file"))


def calibration_batches(predictor: BertPredictor, records: list[Record], paragraphs: int = 96, batch: int = 16) -> list[dict]:
    """Padded batches of the windows the model reads (the first `paragraphs` records, with and
    without their heading paths): what static int8 calibrates its activation ranges on."""
    chosen = records[:paragraphs]
    texts = [r.text for r in chosen] * 2
    paths = [path_text(r.heading_path) for r in chosen] + [""] * len(chosen)
    windows = [features for _, features in predictor.pairs.windows(paths, texts, predictor.stride)]
    return [predictor.pad(windows[start: start + batch]) for start in range(0, len(windows), batch)]


def run_export(model_dir: Path | str, data: list[str] | None = None, threads: int = 0, if_stale: bool = False,
               max_batch_tokens: int | None = None) -> dict:
    """Export, check, record (onnx_parity.json); returns the record."""
    from renda.settings import get_settings

    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    if meta.get("kind") != "bert":
        raise DataError(model_dir, f"ONNX export is for BERT models; this folder holds a {meta.get('kind')!r} model")
    try:
        records, source = parity_records(model_dir, meta, data)
    except DataError:
        if not (if_stale and is_current(model_dir, meta, None)):
            raise
        records, source = [], None  # nothing here to check on: the export of this model stands
    if if_stale and is_current(model_dir, meta, source):
        print(f"ONNX export of {model_dir} is up to date; skipped")
        return read_parity(model_dir) or {}
    if not records:
        raise DataError(source, "no paragraphs to check parity on")
    threads = threads or os.cpu_count() or 1
    budget = max_batch_tokens or get_settings().max_batch_tokens
    started = time.monotonic()
    torch_predictor = BertPredictor.load(model_dir, threads, max_batch_tokens=budget)
    predictions, speed = predict_both(torch_predictor, records)
    gold = [r.label for r in records] * 2
    windows, logits = reference_logits(torch_predictor, records)
    reference = {"predictions": predictions, "gold": gold, "mode_f1": mode_f1(gold, [p.label for p in predictions]),
                 "windows": windows, "logits": logits}
    results = {TORCH: {"file": None, "passed": True, "macro_f1": round(predictions_f1(gold, predictions), 4),
                       "paragraphs_per_second": round(speed, 2)}}
    first_window = choose_first_window(torch_predictor, records, predictions)
    print(f"first-window rule: {json.dumps({k: v for k, v in first_window.items() if k != 'tried'}, ensure_ascii=False)}", flush=True)
    # from here the ONNX files change: no record meanwhile, so nothing half-made is served (and a run that
    # failed before this point, loading the model or reading the paragraphs, leaves the old export standing)
    (model_dir / PARITY_FILE).unlink(missing_ok=True)
    def check(backend: str, make, baseline: WindowedPredictor | None = None) -> dict:
        """`baseline`: the ONNX fp32 predictor; a variant that passes is then timed against it in
        alternation, and its paragraphs/s is fp32's times that ratio (one pass each is too noisy
        a clock to choose between variants by)."""
        try:
            make()
            candidate = OnnxPredictor.load(model_dir, backend, threads, budget)
            result = compare(reference, candidate, records)
            if baseline is not None and result["passed"]:
                ratio = round(speed_ratio(candidate, baseline, records), 3)
                result.update(speed_vs_onnx_fp32=ratio,
                              paragraphs_per_second=round(results["onnx"]["paragraphs_per_second"] * ratio, 2))
            return result
        except Exception as error:  # recorded, never served; torch (and any other export) still can be
            return {"file": ONNX_FILES[backend], "passed": False,
                    "reason": f"{backend} export failed: {type(error).__name__}: {' '.join(str(error).split())[:300]}"}

    fp32, int8 = model_dir / ONNX_FILES["onnx"], model_dir / ONNX_FILES["onnx-int8"]
    results["onnx"] = check("onnx", lambda: export_fp32(torch_predictor.model, torch_predictor.tokenizer, fp32))
    print(f"onnx: {json.dumps(results['onnx'], ensure_ascii=False)}", flush=True)
    variants = []
    if "export failed" in results["onnx"].get("reason", ""):
        for backend in ("onnx-fused", "onnx-int8"):
            results[backend] = {"file": ONNX_FILES[backend], "passed": False, "reason": "not made: the fp32 export failed"}
    else:  # every int8 variant checked; the fastest that passed is kept (else the closest to torch, recorded as failed)
        calibration = calibration_batches(torch_predictor, records)
        ranges: dict = {}  # the fused graph's activation ranges, measured once for its smoothed variants
        baseline = OnnxPredictor.load(model_dir, "onnx", threads, budget) if results["onnx"]["passed"] else None
        fused_path = model_dir / ONNX_FILES["onnx-fused"]

        def fused() -> Path:  # the fused fp32 graph: a backend of its own, and the source of the fused int8 variant
            if not fused_path.is_file():
                export_fused_fp32(torch_predictor.model, torch_predictor.tokenizer, fused_path)
            return fused_path

        fused_path.unlink(missing_ok=True)  # an earlier model's
        results["onnx-fused"] = check("onnx-fused", fused, baseline)
        print(f"onnx-fused: {json.dumps(results['onnx-fused'], ensure_ascii=False)}", flush=True)
        for variant in INT8_VARIANTS:
            slower = next((v["variant"] for v in variants if v["passed"] and keeps_more_fp32(variant, v["variant"])), None)
            if INT8_VARIANTS[variant].get("static") and any(v["passed"] for v in variants):
                # the fallback for when no dynamic variant keeps the labels (it never has here: 0.889)
                why = "a dynamic variant passed, and static quantization is the fallback for when none does"
            elif slower:  # it could not be the fastest that passed
                why = f"it leaves fp32 all that {slower!r} does, which passed, so it cannot be faster"
            else:
                why = None
            if why:  # each skipped saves about 40 s of every make train
                variants.append({"variant": variant, "file": ONNX_FILES["onnx-int8"], "passed": False, "skipped": True,
                                 "reason": f"not tried: {why}"})
            else:
                variants.append({"variant": variant, **check("onnx-int8", lambda: quantize_int8(fp32, int8, variant, calibration, fused, ranges), baseline)})
            print(f"onnx-int8 ({variant}): {json.dumps(variants[-1], ensure_ascii=False)}", flush=True)
        passing = [v for v in variants if v["passed"]]
        chosen = (max(passing, key=lambda v: v["paragraphs_per_second"]) if passing
                  else max(variants, key=lambda v: (v.get("agreement", -1.0), v["variant"])))
        if chosen is not next(v for v in reversed(variants) if not v.get("skipped")):  # the last one written
            quantize_int8(fp32, int8, chosen["variant"], calibration, fused, ranges)  # the file holds the chosen variant
        results["onnx-int8"] = chosen
    passed = [name for name, result in results.items() if result["passed"]]
    record = {
        "model_id": meta.get("model_id"),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "checked_on": {"source": source, "paragraphs": len(records),
                       "predictions": len(gold), "modes": ["with heading path", "paragraph alone"]},
        "thresholds": THRESHOLDS,
        "threads": threads, "max_batch_tokens": budget,
        "backends": results,
        "int8_variants": variants,
        "first_window": first_window,
        "auto": max(passed, key=lambda name: results[name]["paragraphs_per_second"]),
        "minutes": round((time.monotonic() - started) / 60, 2),
    }
    atomic_write_text(model_dir / PARITY_FILE, json.dumps(record, ensure_ascii=False, indent=2))
    verdicts = ", ".join(f"{name} {'passed' if result['passed'] else 'FAILED'}" for name, result in results.items())
    print(f"ONNX export of {model_dir}: {verdicts}; BACKEND=auto serves {record['auto']} -> {model_dir / PARITY_FILE}")
    return record
