"""Which backend serves a BERT model folder: torch, or one of its ONNX exports.

The BACKEND setting asks for one: `auto` (the default) takes the fastest backend that passed the
parity check at export, as recorded in the folder's onnx_parity.json; `onnx` / `onnx-fused` / `onnx-int8` take
that export if it passed; `torch` always takes torch. Anything missing, stale, failed or broken
falls back to torch, and the predictor says why (`backend_reason`, shown by GET /v1/model).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from model.bert import BertPredictor, WindowedPredictor
from model.predictor import is_real, read_meta

PARITY_FILE = "onnx_parity.json"
TORCH = "torch"

log = logging.getLogger("renda.model")


def read_parity(model_dir: Path | str) -> dict | None:
    """The parity record written at export, or None when there is none (ValueError when unreadable)."""
    path = Path(model_dir) / PARITY_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(record, dict) or not isinstance(record.get("backends"), dict):
        raise ValueError("no `backends` in it")
    return record


def _failure(name: str, result: dict) -> str:
    return result.get("reason") or f"{name} failed the parity check at export"


def choose_backend(model_dir: Path | str, wanted: str, meta: dict | None = None) -> tuple[str, str]:
    """(backend, why) for BACKEND=`wanted` in `model_dir`; never a backend that failed parity."""
    from model.onnx_backend import ONNX_FILES

    if wanted == TORCH:
        return TORCH, "BACKEND=torch"
    if wanted != "auto" and wanted not in ONNX_FILES:
        raise ValueError(f"unknown backend {wanted!r}: use auto, torch, {', '.join(ONNX_FILES)}")
    meta = meta or read_meta(model_dir)
    try:
        record = read_parity(model_dir)
    except ValueError as error:
        return TORCH, f"{PARITY_FILE} cannot be read ({error}): torch; run `renda export --model {model_dir}`"
    if record is None:
        return TORCH, f"no ONNX export ({PARITY_FILE} missing): torch; `make export` or `renda export --model DIR` makes one"
    if record.get("model_id") != meta.get("model_id"):
        return TORCH, f"the ONNX export is of another model ({record.get('model_id')}, not {meta.get('model_id')}): torch; run `make export`"
    results = record["backends"]
    if wanted == "auto":
        passed = [name for name, result in results.items() if result.get("passed")]
        ranked = sorted(passed, key=lambda name: -float(results[name].get("paragraphs_per_second") or 0))
        skipped = []
        for name in ranked:
            if name == TORCH or (Path(model_dir) / ONNX_FILES[name]).is_file():
                why = f"BACKEND=auto: the fastest that passed parity at export ({results[name].get('paragraphs_per_second')} paragraphs/s)"
                return name, why + (f"; {'; '.join(skipped)}" if skipped else "")
            skipped.append(f"{ONNX_FILES[name]} missing")
        return TORCH, "BACKEND=auto: no export passed parity" + (f" ({'; '.join(skipped)})" if skipped else "") + ": torch"
    result = results.get(wanted) or {}
    if not result.get("passed"):
        return TORCH, f"BACKEND={wanted}: {_failure(wanted, result)}: torch"
    if not (Path(model_dir) / ONNX_FILES[wanted]).is_file():
        return TORCH, f"BACKEND={wanted}: {ONNX_FILES[wanted]} missing: torch"
    return wanted, f"BACKEND={wanted}: passed parity at export"


def load_bert_predictor(model_dir: Path | str, threads: int | None = None, backend: str | None = None,
                        cache_size: int | None = None, max_batch_tokens: int | None = None,
                        meta: dict | None = None) -> WindowedPredictor:
    """A BERT folder behind the backend the settings ask for (arguments override them); `meta`: the
    folder's metadata when the caller has read it (it is read once per load)."""
    from renda.settings import get_settings

    settings = get_settings()
    backend = backend or settings.backend
    cache_size = settings.cache_size if cache_size is None else cache_size
    max_batch_tokens = max_batch_tokens or settings.max_batch_tokens
    meta = meta or read_meta(model_dir)
    chosen, reason = choose_backend(model_dir, backend, meta)
    predictor: WindowedPredictor | None = None
    if chosen != TORCH:
        from model.onnx_backend import OnnxPredictor

        try:
            predictor = OnnxPredictor.load(model_dir, chosen, threads, max_batch_tokens, cache_size, meta,
                                           rows_apart=settings.int8_rows_apart)
        except Exception as error:  # a broken or unloadable export: torch still serves
            reason = f"{reason}; but it failed to load ({type(error).__name__}: {' '.join(str(error).split())[:300]}): torch"
    if predictor is None:
        predictor = BertPredictor.load(model_dir, threads, max_batch_tokens=max_batch_tokens, cache_size=cache_size, meta=meta)
    predictor.backend_reason = reason + ("; each window computed in a batch of its own, so a paragraph's scores do not"
                                         " depend on its neighbours (INT8_ROWS_APART)" if predictor.rows_apart else "")
    if settings.first_window:
        predictor.first_window_threshold = first_window_threshold(model_dir, meta)
    log.info("backend %s for %s (%s)", predictor.backend, model_dir, predictor.backend_reason)
    return predictor


def first_window_threshold(model_dir: Path | str, meta: dict) -> float | None:
    """The first-window threshold the export chose for this very model, else None (every window read)."""
    try:
        record = read_parity(model_dir)
    except ValueError:
        return None
    if not record or record.get("model_id") != meta.get("model_id"):
        return None
    threshold = (record.get("first_window") or {}).get("threshold")
    return float(threshold) if is_real(threshold) and 0 < threshold <= 1 else None
