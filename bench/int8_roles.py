"""`make bench-int8`: which MatMuls of the int8 export move the labels.

Each part of a layer (`model.onnx_backend.matmul_roles`: query/key/attention output, values, the
FFN's input and output projections) is quantised alone, dynamic and per channel as the export does,
the rest left fp32; then every part at once. Each copy is compared with the fp32 ONNX model on the
same paragraphs (`--data`, else the model's dev split), each read with and without its heading path:
label agreement, mean and largest |logit difference| over the windows read, and paragraphs/s
(one pass, 32 a call). The int8 variants that leave parts fp32 (`INT8_VARIANTS`) were chosen from
this table. Writes int8_roles.json and int8_roles.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from model.context import path_text
from model.onnx_backend import ONNX_FILES, OnnxPredictor, activation_matmuls, matmul_roles, open_session, quantize_dynamic_int8
from model.predictor import read_meta
from training.export import parity_records, predict_both

ROLES = ("other", "value", "ffn_in", "ffn_out")


def run(model_dir: Path | str, data: list[str] | None = None, threads: int = 0, max_batch_tokens: int = 256) -> dict:
    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    records, source = parity_records(model_dir, meta, data)
    threads = threads or os.cpu_count() or 1
    fp32 = model_dir / ONNX_FILES["onnx"]
    reference = OnnxPredictor.load(model_dir, "onnx", threads, max_batch_tokens, meta=meta)
    expected, speed = predict_both(reference, records)
    texts = [r.text for r in records]
    windows = (reference.pairs.windows([path_text(r.heading_path) for r in records], texts, reference.stride)
               + reference.pairs.windows([""] * len(records), texts, reference.stride))
    expected_logits = reference.window_scores(windows)
    roles, attention_products = matmul_roles(fp32), activation_matmuls(fp32)  # each reads the graph: once
    rows = [{"quantised": "none (fp32)", "matmuls": 0, "agreement": 1.0, "mean_logit_diff": 0.0, "max_logit_diff": 0.0,
             "paragraphs_per_second": round(speed, 1)}]
    plans = [(f"{role} only", {name for name, r in roles.items() if r == role}) for role in ROLES] + [("every part", set(roles))]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "part.int8.onnx"
        for name, quantised in plans:
            quantize_dynamic_int8(fp32, path, exclude=[n for n in roles if n not in quantised] + attention_products)
            candidate = OnnxPredictor(open_session(path, threads), reference.tokenizer, meta, reference.max_length,
                                      reference.stride, reference.prefix, "onnx-int8", max_batch_tokens)
            got, speed = predict_both(candidate, records)
            diff = np.abs(candidate.window_scores(windows) - expected_logits)
            rows.append({"quantised": name, "matmuls": len(quantised),
                         "agreement": round(float(np.mean([a.label == b.label for a, b in zip(expected, got)])), 4),
                         "mean_logit_diff": float(f"{diff.mean():.3g}"), "max_logit_diff": float(f"{diff.max():.3g}"),
                         "paragraphs_per_second": round(speed, 1)})
            print(json.dumps(rows[-1]), flush=True)
    return {"model_id": meta.get("model_id"), "checked_on": {"source": source, "predictions": len(expected)},
            "threads": threads, "max_batch_tokens": max_batch_tokens, "rows": rows}


def table(result: dict) -> str:
    lines = ["| MatMuls quantised | how many | label agreement with fp32 | mean / largest logit difference | paragraphs/s |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['quantised']} | {r['matmuls']} | {r['agreement']:.4f} | {r['mean_logit_diff']:.3g} / {r['max_logit_diff']:.3g} "
              f"| {r['paragraphs_per_second']:.1f} |" for r in result["rows"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an exported BERT model folder (model.onnx)")
    parser.add_argument("--data", nargs="*", help="paragraphs to compare on (report folders, labelled JSONL); default the dev split")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", default="reports/bench")
    args = parser.parse_args(argv)
    result = run(args.model, args.data or None, args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_roles.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    (out / "int8_roles.md").write_text(table(result), encoding="utf-8")
    print(table(result) + f"-> {out / 'int8_roles.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
