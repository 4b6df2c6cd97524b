"""`make bench-int8`: which MatMuls of the int8 export move the labels.

Each part of a layer (`model.onnx_backend.matmul_roles`: query/key/attention output, values, the
FFN's input and output projections) is quantised alone, dynamic and per channel as the export does,
the rest left fp32; then every part at once. Each copy is compared with the fp32 ONNX model on the
same paragraphs (`--data`, else the model's dev split), each read with and without its heading path:
label agreement, mean and largest |logit difference| over the windows read, and paragraphs/s
(one pass, 32 a call). The int8 variants that leave parts fp32 (`INT8_VARIANTS`) were chosen from
this table. Writes int8_roles.json and int8_roles.md.

`--smooth ALPHA …`: the same on the fused graph (model.fused.onnx, its attention int8 too), its
activations smoothed with each alpha (smooth_activations), every part int8 but some parts in some
of the layers (FUSED_PLANS): where the smoothed variants of the export were chosen. Compared
with the fused fp32 graph; the macro-F1 change is against the gold labels in each mode, as the
export's parity check reads it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from model.context import path_text
from model.onnx_backend import (ONNX_FILES, OnnxPredictor, activation_matmuls, fp32_nodes, matmul_roles, open_session,
                                input_ranges, quantize_dynamic_int8, smooth_activations)
from model.predictor import read_meta
from training.export import calibration_batches, mode_f1, parity_records, predict_both

ROLES = ("other", "value", "ffn_in", "ffn_out")
# the fused graph's plans: the parts left fp32, each in a share of the layers from the bottom
EVERY, BOTTOM, TOP = (0.0, 1.0), (0.0, 0.5), (0.5, 1.0)
FUSED_PLANS = (("every part", {}), ("FFN output fp32 in every layer", {"ffn_out": EVERY}),
               ("FFN output fp32 in the bottom half", {"ffn_out": BOTTOM}), ("FFN output fp32 in the top half", {"ffn_out": TOP}),
               ("FFN output fp32 in the bottom third", {"ffn_out": (0.0, 1 / 3)}), ("attention fp32", {"attention": EVERY}),
               ("attention and FFN output of the bottom half fp32", {"attention": EVERY, "ffn_out": BOTTOM}),
               ("FFN input and output of the bottom half fp32", {"ffn_in": BOTTOM, "ffn_out": BOTTOM}))


def run(model_dir: Path | str, data: list[str] | None = None, threads: int = 0, max_batch_tokens: int = 256,
        smooth: list[float] | None = None) -> dict:
    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    records, source = parity_records(model_dir, meta, data)
    threads = threads or os.cpu_count() or 1
    backend = "onnx-fused" if smooth else "onnx"
    fp32 = model_dir / ONNX_FILES[backend]
    reference = OnnxPredictor.load(model_dir, backend, threads, max_batch_tokens, meta=meta)
    expected, speed = predict_both(reference, records)
    gold = [r.label for r in records] * 2
    reference_f1 = mode_f1(gold, [p.label for p in expected])
    texts = [r.text for r in records]
    windows = (reference.pairs.windows([path_text(r.heading_path) for r in records], texts, reference.stride)
               + reference.pairs.windows([""] * len(records), texts, reference.stride))
    expected_logits = reference.window_scores(windows)
    roles, attention_products = matmul_roles(fp32), activation_matmuls(fp32)  # each reads the graph: once
    rows = [{"quantised": "none (fp32)", "matmuls": 0, "agreement": 1.0, "macro_f1_change": {"path": 0.0, "alone": 0.0}, "mean_logit_diff": 0.0,
             "max_logit_diff": 0.0, "paragraphs_per_second": round(speed, 1)}]
    if smooth:  # (name, alpha, nodes left fp32)
        plans = [(f"alpha {alpha}: {name}", alpha, fp32_nodes(roles, parts)) for alpha in smooth for name, parts in FUSED_PLANS]
        ranges = input_ranges(fp32, calibration_batches(reference, records))  # measured once for every plan
    else:
        plans = [(f"{role} only", None, [n for n, r in roles.items() if r != role]) for role in ROLES] + [("every part", None, [])]
    with tempfile.TemporaryDirectory() as tmp:
        path, smoothed = Path(tmp) / "part.int8.onnx", Path(tmp) / "smoothed.onnx"
        for name, alpha, left in plans:
            graph = fp32 if alpha is None else smooth_activations(fp32, smoothed, ranges, alpha, skip=set(left))
            quantize_dynamic_int8(graph, path, exclude=left + attention_products)
            candidate = OnnxPredictor(open_session(path, threads), reference.tokenizer, meta, reference.max_length,
                                      reference.stride, reference.prefix, "onnx-int8", max_batch_tokens)
            got, speed = predict_both(candidate, records)
            diff = np.abs(candidate.window_scores(windows) - expected_logits)
            rows.append({"quantised": name, "matmuls": len(roles) - len(left),
                         "agreement": round(float(np.mean([a.label == b.label for a, b in zip(expected, got)])), 4),
                         "macro_f1_change": {mode: round(value - reference_f1[mode], 4) for mode, value in mode_f1(gold, [p.label for p in got]).items()},
                         "mean_logit_diff": float(f"{diff.mean():.3g}"), "max_logit_diff": float(f"{diff.max():.3g}"),
                         "paragraphs_per_second": round(speed, 1)})
            print(json.dumps(rows[-1]), flush=True)
    return {"model_id": meta.get("model_id"), "compared_with": ONNX_FILES[backend],
            "checked_on": {"source": source, "predictions": len(expected)},
            "threads": threads, "max_batch_tokens": max_batch_tokens, "rows": rows}


def table(result: dict) -> str:
    lines = ["| MatMuls quantised | how many | label agreement with fp32 | macro-F1 change with path / alone | mean / largest logit difference | paragraphs/s |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['quantised']} | {r['matmuls']} | {r['agreement']:.4f} | {r['macro_f1_change']['path']:+.4f} / {r['macro_f1_change']['alone']:+.4f} "
              f"| {r['mean_logit_diff']:.3g} / {r['max_logit_diff']:.3g} "
              f"| {r['paragraphs_per_second']:.1f} |" for r in result["rows"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an exported BERT model folder (model.onnx)")
    parser.add_argument("--data", nargs="*", help="paragraphs to compare on (report folders, labelled JSONL); default the dev split")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--smooth", type=float, nargs="*", help="alphas: the smoothed fused graph instead (model.fused.onnx)")
    parser.add_argument("--out", default="reports/bench")
    args = parser.parse_args(argv)
    result = run(args.model, args.data or None, args.threads, smooth=args.smooth)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "int8_roles_fused" if args.smooth else "int8_roles"
    (out / f"{name}.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    (out / f"{name}.md").write_text(table(result), encoding="utf-8")
    print(table(result) + f"-> {out / f'{name}.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
