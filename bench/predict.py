"""`make bench`: the model card's plain-transformers code against every backend of the project's
predictor, in one process and one run, on every labelled paragraph of a corpus (default
../shared/corpus), at batch 1, 8 and 32 with threads = cores.

For each code and batch size: paragraphs/s, p50/p95 latency of a call (one call = one batch of
paragraphs in corpus order, as a client sends them; the codes take turns every 32 paragraphs, so
that the machine's drift falls on all of them alike), peak RSS of the process holding that code
alone (measured apart, in a pass of its own), label agreement with
the plain code at batch 1 (on all paragraphs, and on those that fit one window, where both read the
same tokens) and macro-F1 against the gold labels. Every backend reads paragraphs as the service
does: a long paragraph's other windows only when its first is unsure (the threshold the export
chose; FIRST_WINDOW=false turns it off), and the served backend is timed once more reading every
window, to show what the rule saves. The predictor runs with its cache off, so every
paragraph is computed; the cache is measured apart, on whole reports (each report's paragraphs in
one call, as POST /v1/reports sends them): its hit rate, and the speed on the paragraphs that miss.

Then the served backend (what `auto` picks) is profiled at the smallest and largest batch: the
share of its time spent tokenizing, in the model and in the rest, and the share of padding tokens.

Writes OUT/predict.json, OUT/predict.md (the table), OUT/predict.png and OUT/profile.md.
usage: python -m bench.predict --model DIR --corpus DIR --out DIR [--limit N]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.helpers import PeakRss
from model.backends import PARITY_FILE, TORCH, choose_backend, first_window_threshold, load_bert_predictor, read_parity
from model.bert import BertPredictor, PairEncoder, read_window_config, set_threads
from model.context import path_text
from model.onnx_backend import INT8, ONNX_FILES, OnnxPredictor
from model.predictor import read_meta
from renda.records import atomic_write_text
from model.metrics import macro_f1

BATCHES = (1, 8, 32)
PLAIN = "plain transformers (model card)"


class PlainCard:
    """The code of the model card (training/model_card.py), batched: pad to the longest, truncate
    the paragraph at the window, one text pair per paragraph, no windows, no sorting. The first
    text is the heading path as the project's predictor reads it (prefix + path, at most half the
    window), so the two differ only in how they run the model."""

    def __init__(self, model_dir: Path):
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

        self.max_length, _, prefix = read_window_config(model_dir)
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.pairs = PairEncoder(self.tok, self.max_length, prefix)
        self.labels = read_meta(model_dir)["labels"]
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        self.mean = config.get("pooling", "cls") == "mean"
        if self.mean:
            self.encoder = AutoModel.from_pretrained(model_dir, add_pooling_layer=False).eval()
            weights = load_file(model_dir / "model.safetensors")
            self.weight, self.bias = weights["classifier.weight"], weights["classifier.bias"]
        else:
            self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()

    def predict(self, texts: list[str], contexts: list[list[str]]) -> list[str]:
        inputs = self.tok([self.pairs.first(path_text(c)) for c in contexts], texts, padding=True,
                          truncation="only_second", max_length=self.max_length, return_tensors="pt")
        with torch.inference_mode():
            if self.mean:
                hidden = self.encoder(**inputs).last_hidden_state
                mask = inputs["attention_mask"][..., None].float()
                mean = (hidden * mask).sum(1) / mask.sum(1)
                probs = (mean @ self.weight.T + self.bias).softmax(-1)
            else:
                probs = self.model(**inputs).logits.softmax(-1)
        return [self.labels[i] for i in probs.argmax(-1).tolist()]


Predict = Callable[[list[str], list[list[str]]], list[str]]
CHUNK = 32  # paragraphs a code runs before the next code takes its turn


def run_interleaved(codes: dict[str, Predict], texts: list[str], contexts: list[list[str]], batch: int,
                    chunk: int = CHUNK, warmup_calls: int = 2) -> dict[str, dict]:
    """Every paragraph once per code, `batch` a call in corpus order, the codes taking turns chunk by
    chunk (the order rotating), after a warm-up of each: labels, paragraphs/s and call latencies.
    This machine's speed drifts by ±20 % over a minute (other tenants); codes timed one after the
    other each met a different machine, and their ratios moved with it. Taking turns every `chunk`
    paragraphs, every code meets the same drift."""
    for predict in codes.values():
        for start in range(0, min(len(texts), warmup_calls * batch), batch):
            predict(texts[start: start + batch], contexts[start: start + batch])
    gc.collect()
    seconds = dict.fromkeys(codes, 0.0)
    latencies: dict[str, list[float]] = {name: [] for name in codes}
    labels: dict[str, list[str]] = {name: [] for name in codes}
    names = list(codes)
    step = max(chunk, batch)
    for turn, first in enumerate(range(0, len(texts), step)):
        for name in names[turn % len(names):] + names[: turn % len(names)]:
            for start in range(first, min(first + step, len(texts)), batch):
                began = time.perf_counter()
                labels[name] += codes[name](texts[start: start + batch], contexts[start: start + batch])
                latencies[name].append(time.perf_counter() - began)
                seconds[name] += latencies[name][-1]
    out = {}
    for name in codes:
        calls = sorted(latencies[name])
        out[name] = {"batch": batch, "paragraphs": len(texts), "seconds": round(seconds[name], 3),
                     "paragraphs_per_second": round(len(texts) / seconds[name], 2),
                     "latency_ms_p50": round(1000 * statistics.median(calls), 2),
                     "latency_ms_p95": round(1000 * calls[min(len(calls) - 1, int(0.95 * len(calls)))], 2),
                     "labels": labels[name]}
    return out


def peak_memory(load: Callable[[], Predict], texts: list[str], contexts: list[list[str]], batch: int) -> float:
    """Peak RSS (MB) of this process holding one code alone, over a pass `batch` a call after a
    warm-up pass: memory is measured apart from speed, where every code is loaded at once."""
    gc.collect()
    predict = load()
    for start in range(0, len(texts), batch):
        predict(texts[start: start + batch], contexts[start: start + batch])
    with PeakRss() as memory:
        for start in range(0, len(texts), batch):
            predict(texts[start: start + batch], contexts[start: start + batch])
    del predict
    gc.collect()
    return round(memory.peak, 1)


def served_threshold(model_dir: Path) -> float | None:
    """The first-window threshold the service applies to this folder (FIRST_WINDOW and the export's
    record), else None: every window read."""
    from renda.settings import get_settings

    return first_window_threshold(model_dir, read_meta(model_dir)) if get_settings().first_window else None


def project_predictors(model_dir: Path, threads: int, max_batch_tokens: int, cache_size: int = 0):
    """(name, parity note, loader) for torch and every ONNX export in the folder (a failed one
    too, marked: it is measured but never served). Each reads paragraphs as the service does, the
    first-window rule included, so a row times what a user of that backend would pay for."""
    try:
        record = read_parity(model_dir) or {"backends": {}}
    except ValueError:
        record = {"backends": {}}
    threshold = served_threshold(model_dir)

    def served(predictor):
        predictor.first_window_threshold = threshold
        return predictor

    found = [(TORCH, "reference", lambda: served(BertPredictor.load(model_dir, threads, max_batch_tokens=max_batch_tokens,
                                                                      cache_size=cache_size)))]
    for backend, file in ONNX_FILES.items():
        if (model_dir / file).is_file():
            result = record["backends"].get(backend, {})
            note = "passed" if result.get("passed") else ("FAILED (not served)" if result else f"unchecked (no {PARITY_FILE})")
            found.append((backend, note, lambda b=backend: served(OnnxPredictor.load(model_dir, b, threads, max_batch_tokens, cache_size))))
            if backend == INT8:  # what computing each int8 window apart costs (INT8_ROWS_APART=false)
                found.append((f"{backend}, shared batches", note, lambda: served(OnnxPredictor.load(
                    model_dir, INT8, threads, max_batch_tokens, cache_size, rows_apart=False))))
    return found


def labels_of(predictor) -> Callable[[list[str], list[list[str]]], list[str]]:
    return lambda texts, contexts: [p.label for p in predictor.predict(texts, contexts)]


def agreement(labels: list[str], reference: list[str], mask: list[bool] | None = None) -> float:
    pairs = [(a, b) for i, (a, b) in enumerate(zip(labels, reference)) if mask is None or mask[i]]
    return round(sum(a == b for a, b in pairs) / len(pairs), 4) if pairs else float("nan")


def cache_figures(load, reports: list[Path], cache_size: int) -> dict:
    """Whole reports through the predictor (one call a report), without the cache and with it
    (empty at the start): the hit rate, and the speed on the paragraphs that missed."""
    from model.reports import label_report
    from renda.records import read_text_file

    texts = [read_text_file(path) for path in reports]
    runs, backend = {}, None
    for size in (0, cache_size):
        predictor = load(size)
        backend = predictor.backend
        label_report(predictor, texts[0])  # warm-up
        predictor.cache.clear()
        started = time.perf_counter()
        paragraphs = sum(len(label_report(predictor, text).predictions) for text in texts)
        runs[size] = (time.perf_counter() - started, paragraphs, predictor.cache.stats())
        del predictor
        gc.collect()
    (off_s, paragraphs, _), (on_s, _, stats) = runs[0], runs[cache_size]
    misses = stats["misses"]
    return {"backend": backend, "reports": len(reports), "paragraphs": paragraphs, "cache_size": cache_size,
            "hits": stats["hits"], "misses": misses, "hit_rate": stats["hit_rate"],
            "seconds_without_cache": round(off_s, 3), "seconds_with_cache": round(on_s, 3),
            "paragraphs_per_second_without_cache": round(paragraphs / off_s, 2),
            "missed_paragraphs_per_second": round(misses / on_s, 2) if misses else None}


def profile(predictor, texts: list[str], contexts: list[list[str]], batch: int) -> dict:
    """Where a backend's time goes, `batch` paragraphs a call, after a warm-up: tokenizing (the
    windows of every paragraph), the model (its forward passes), and the rest (padding, the
    first-window rule, softmax, combining windows); and the share of the tokens computed that are
    padding. Measured by timing the predictor's own steps in place, so it is the served code."""
    spent = {"tokenize": 0.0, "model": 0.0}
    tokens = {"real": 0, "computed": 0, "windows": 0, "batches": 0}
    pairs, steps = predictor.pairs, (predictor.pairs.windows, predictor.logits, predictor.pad)

    def timed(name: str, step: Callable) -> Callable:
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return step(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started
        return run

    def counted_pad(windows):
        padded = steps[2](windows)
        tokens["real"] += sum(len(w["input_ids"]) for w in windows)
        tokens["computed"] += int(padded["input_ids"].size)
        tokens["windows"] += len(windows)
        tokens["batches"] += 1
        return padded

    for start in range(0, min(len(texts), 2 * batch), batch):  # warm-up, not counted
        predictor.predict(texts[start: start + batch], contexts[start: start + batch])
    pairs.windows, predictor.logits, predictor.pad = timed("tokenize", steps[0]), timed("model", steps[1]), counted_pad
    try:
        started = time.perf_counter()
        for start in range(0, len(texts), batch):
            predictor.predict(texts[start: start + batch], contexts[start: start + batch])
        total = time.perf_counter() - started
    finally:  # the instance attributes only shadowed the methods
        del pairs.windows, predictor.logits, predictor.pad
    other = max(0.0, total - spent["tokenize"] - spent["model"])
    return {"backend": predictor.backend, "batch": batch, "paragraphs": len(texts), "seconds": round(total, 3),
            "tokenize_s": round(spent["tokenize"], 3), "model_s": round(spent["model"], 3), "other_s": round(other, 3),
            "tokenize_share": round(spent["tokenize"] / total, 4), "model_share": round(spent["model"] / total, 4),
            "other_share": round(other / total, 4), "windows": tokens["windows"], "model_batches": tokens["batches"],
            "padding_share": round(1 - tokens["real"] / tokens["computed"], 4) if tokens["computed"] else 0.0,
            "threads": torch.get_num_threads()}


def profile_markdown(rows: list[dict]) -> str:
    lines = ["| backend | batch | seconds | tokenizing | model | the rest | windows | model batches | padding share of tokens |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['batch']} | {r['seconds']:.2f} | {r['tokenize_share']:.1%} | {r['model_share']:.1%} | "
                     f"{r['other_share']:.1%} | {r['windows']} | {r['model_batches']} | {r['padding_share']:.1%} |")
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict]) -> str:
    plain = {r["batch"]: r["paragraphs_per_second"] for r in rows if r["code"] == PLAIN}
    lines = ["| code | parity at export | windows read | batch | paragraphs/s | × plain | p50 ms | p95 ms | peak RSS MB | agreement | agreement (one window) | macro-F1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["paragraphs_per_second"] / plain[r["batch"]] if plain.get(r["batch"]) else float("nan")
        lines.append(f"| {r['code']} | {r['parity']} | {r['windows']} | {r['batch']} | {r['paragraphs_per_second']:.1f} | {ratio:.2f} | "
                     f"{r['latency_ms_p50']:.1f} | {r['latency_ms_p95']:.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['agreement']:.4f} | {r['agreement_one_window']:.4f} | {r['macro_f1']:.3f} |")
    return "\n".join(lines) + "\n"


def draw(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codes = list(dict.fromkeys(r["code"] for r in rows))
    batches = sorted({r["batch"] for r in rows})
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / len(codes)
    for k, code in enumerate(codes):
        values = [next((r["paragraphs_per_second"] for r in rows if r["code"] == code and r["batch"] == b), 0) for b in batches]
        bars = ax.bar([i + k * width for i in range(len(batches))], values, width, label=code)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks([i + width * (len(codes) - 1) / 2 for i in range(len(batches))], [f"batch {b}" for b in batches])
    ax.set_ylabel("paragraphs / s")
    ax.set_title(f"{rows[0]['paragraphs']} paragraphs, {rows[0]['threads']} threads")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(model_dir: Path, corpus: list[str], out: Path, batches=BATCHES, threads: int = 0, limit: int = 0,
        reports: list[Path] | None = None, cache_size: int | None = None, max_batch_tokens: int | None = None) -> dict:
    from renda.corpus import load_corpus
    from renda.settings import get_settings

    settings = get_settings()
    threads = threads or os.cpu_count() or 1
    set_threads(threads)
    max_batch_tokens = max_batch_tokens or settings.max_batch_tokens
    cache_size = cache_size if cache_size is not None else (settings.cache_size or 4096)
    records = load_corpus(corpus).records
    records = records[:limit] if limit else records
    texts, contexts, gold = [r.text for r in records], [r.heading_path or [] for r in records], [r.label for r in records]
    rows: list[dict] = []
    common = {"paragraphs": len(texts), "threads": threads}

    from transformers import AutoTokenizer

    max_length, _, prefix = read_window_config(model_dir)  # which paragraphs fit one window: the tokenizer alone
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pairs = PairEncoder(tokenizer, max_length, prefix)
    fits = [len(ids) <= max_length for ids in tokenizer([pairs.first(path_text(c)) for c in contexts], texts,
                                                        truncation="only_second", max_length=max_length + 1)["input_ids"]]
    threshold = served_threshold(model_dir)
    reading = f"first, rest below {threshold:g}" if threshold else "every window"

    def served_every_window():
        served = load_bert_predictor(model_dir, threads, cache_size=0, max_batch_tokens=max_batch_tokens)
        served.first_window_threshold = None
        return served

    # (code, parity note, windows read, loader of its predict function)
    codes = [(PLAIN, "—", "first, truncated", lambda: PlainCard(model_dir).predict)]
    codes += [(f"renda {backend}", note, reading, lambda load=load: labels_of(load()))
              for backend, note, load in project_predictors(model_dir, threads, max_batch_tokens)]
    if threshold:  # what the first-window rule saves: the served backend once more, reading every window
        served_backend = choose_backend(model_dir, settings.backend, read_meta(model_dir))[0]
        note = next(note for code, note, _, _ in codes if code == f"renda {served_backend}")
        codes.append((f"renda {served_backend}, every window", note, "every window", lambda: labels_of(served_every_window())))
    memory = {code: peak_memory(load, texts, contexts, max(batches)) for code, _, _, load in codes}
    print(json.dumps({"peak_rss_mb": memory}, ensure_ascii=False), flush=True)
    loaded = {code: load() for code, _, _, load in codes}
    timed = {batch: run_interleaved(loaded, texts, contexts, batch) for batch in batches}
    del loaded
    gc.collect()
    reference = timed[min(batches)][PLAIN]["labels"]  # the smallest batch: no padding at batch 1
    for code, note, windows, _ in codes:
        for batch in batches:
            rows.append({"code": code, "parity": note, "windows": windows, **common, **timed[batch][code],
                         "peak_rss_mb": memory[code]})
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "labels"}, ensure_ascii=False), flush=True)

    for row in rows:
        labels = row.pop("labels")
        row.update(agreement=agreement(labels, reference), agreement_one_window=agreement(labels, reference, fits),
                   macro_f1=round(macro_f1(gold, labels), 4))

    profiles = []
    served = load_bert_predictor(model_dir, threads, cache_size=0, max_batch_tokens=max_batch_tokens)
    for batch in sorted({min(batches), max(batches)}):
        profiles.append(profile(served, texts, contexts, batch))
        print(json.dumps({"profile": profiles[-1]}), flush=True)
    del served
    gc.collect()

    cache = None
    if reports is None:  # every report text of the corpus (with --limit, the first two)
        reports = sorted(p for c in corpus for p in Path(c).rglob("*.txt") if p.name.lower() != "readme.txt")
        reports = reports[:2] if limit else reports
    if reports:
        cache = cache_figures(lambda size: load_bert_predictor(model_dir, threads, cache_size=size, max_batch_tokens=max_batch_tokens),
                              reports, cache_size)
        print(json.dumps({"cache": cache}), flush=True)

    result = {"model": str(model_dir), "model_id": read_meta(model_dir).get("model_id"), "corpus": corpus,
              "paragraphs": len(texts), "fit_one_window": sum(fits), "threads": threads, "cores": os.cpu_count(),
              "cpu": platform.processor() or platform.machine(), "max_batch_tokens": max_batch_tokens,
              "torch": torch.__version__, "rows": rows, "cache": cache, "profile": profiles}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "predict.json", json.dumps(result, ensure_ascii=False, indent=2))
    table = markdown(rows)
    atomic_write_text(out / "predict.md", table)
    draw(rows, out / "predict.png")
    atomic_write_text(out / "profile.md", profile_markdown(profiles))
    print(table)
    print(profile_markdown(profiles))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a trained BERT folder (with `make export` done)")
    parser.add_argument("--corpus", nargs="+", default=["../shared/corpus"], help="labelled corpora (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("reports/bench"), help="folder for predict.json/.md/.png")
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--threads", type=int, default=0, help="0 = one per core (default)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N paragraphs (smoke runs)")
    parser.add_argument("--cache-size", type=int, default=None, help="for the cache figures (default: CACHE_SIZE, else 4096)")
    args = parser.parse_args()
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # the card's AutoModel load lists the head's weights as unexpected: known
    run(args.model, args.corpus, args.out, tuple(args.batches), args.threads, args.limit, cache_size=args.cache_size)


if __name__ == "__main__":
    main()
