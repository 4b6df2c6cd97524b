"""The model card (README.md) written into every trained model folder."""

from __future__ import annotations

from pathlib import Path

from model.baseline import CHARS, WORDS
from renda.labels import LABELS


def per_label_table(metrics: dict) -> str:
    if not metrics:
        return "(no held-out split)"
    rows = ["| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for label in LABELS:
        m = metrics["per_label"][label]
        rows.append(f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    rows.append(f"| **macro-F1** | | | **{metrics['macro_f1']:.3f}** | {metrics['paragraphs']} |")
    rows.append(f"| accuracy | | | {metrics['accuracy']:.3f} | |")
    return "\n".join(rows)


def mode_lines(metrics: dict) -> str:
    if not metrics:
        return ""
    return (f"Macro-F1 in the three modes: paragraph alone {metrics['alone']['macro_f1']:.3f}, with the heading path "
            f"{metrics['macro_f1']:.3f}, whole report {metrics['report']['macro_f1']:.3f}.")


def calibration_line(meta: dict) -> str:
    """Temperature scaling, fitted on dev (model/calibration.py): what the predictor serves."""
    if meta.get("temperature") is None:
        return "none (the scores are the model's softmax)"
    held_out = meta.get("test_metrics") or {}
    cal, alone = held_out.get("calibration") or {}, (held_out.get("alone") or {}).get("calibration") or {}
    ece = f"; held-out ECE {cal['ece_before']:.3f} before, {cal['ece_after']:.3f} after (`reliability.png`)" if cal else ""
    line = (f"temperature T = {meta['temperature']:.3f} fitted on the dev split: the served scores are the "
            f"probabilities below raised to 1/T and renormalised{ece}.")
    if meta.get("temperature_alone") is not None:
        ece = f"; held-out ECE {alone['ece_before']:.3f} before, {alone['ece_after']:.3f} after (`reliability-alone.png`)" if alone else ""
        line += f" A paragraph read without its heading path is scaled by its own T = {meta['temperature_alone']:.3f}{ece}."
    return line


def recipe_line(config) -> str:
    """Which layers trained: what a reader needs to compare this model with another."""
    layers = f"the bottom {config.layers} layers of the base model kept" if config.layers else "all the base model's layers"
    frozen = (f"embeddings and the bottom {config.freeze_layers} layers frozen (their outputs computed once and cached), "
              f"the layers above and the head trained" if config.freeze_layers else
              "every layer trained" + (" but the word embeddings" if config.freeze_embeddings else ""))
    return f"{layers}; {frozen}; learning rate {config.learning_rate:g} (head {config.head_learning_rate:g}), batch {config.batch_size}."


def served_parts(meta: dict) -> str:
    """The card's Fusion and Plans judge lines: what the served scores add to the encoder's own."""
    fusion, judge = meta.get("fusion"), meta.get("plans_judge")
    fusion_text = (f"the served scores average the encoder's with those of the n-gram model in `{fusion['model']}/` (trained on "
                   f"the same split): the encoder's share {fusion['weight']:.1f} with the heading path, "
                   f"{fusion['weight_alone']:.1f} alone, fitted on dev." if fusion else "none (the encoder's scores alone).")
    of = {WORDS: "of the encoder tokenizer's words", CHARS: "of characters"}.get(judge.get("units", CHARS), "") if judge else ""
    judge_text = (f"a paragraph read alone (no heading path) takes P(plans) from the n-gram model ({of}) in `{judge['model']}/`, trained "
                  f"on the same split for that one question; the other labels share the rest as the encoder gave them. With "
                  f"its heading path, or read as `other` by the encoder, the encoder's scores stand. The judged scores are then scaled by the temperature "
                  f"{judge.get('temperature', 1.0):.2f} (fitted on the dev paragraphs it judges; it changes no label)." if judge else "none.")
    note = " The snippet below gives the encoder's part only." if fusion or judge else ""
    return f"- **Fusion:** {fusion_text}\n- **Plans judge:** {judge_text}{note}"


def load_snippet(config) -> str:
    """How to use the folder with plain transformers, for the head it was trained with."""
    # A text pair: the heading path (part › section › sub-heading; "" when unknown), then the paragraph.
    example = (f'inputs = tok("{config.text_prefix}今后工作建议", "加强代表联络站建设。…", return_tensors="pt",\n'
               f'             truncation="only_second", max_length={config.max_length})')
    if config.pooling == "cls":
        return f"""```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer
import torch

tok = AutoTokenizer.from_pretrained("PATH/TO/THIS/FOLDER")
model = AutoModelForSequenceClassification.from_pretrained("PATH/TO/THIS/FOLDER").eval()
{example}
with torch.inference_mode():
    probs = model(**inputs).logits.softmax(-1)[0]
print(model.config.id2label[int(probs.argmax())])
```"""
    return f"""The classifier reads the mean of the token vectors (`"pooling": "mean"` in `config.json`), so
`AutoModelForSequenceClassification` (which reads the [CLS] token) does not fit it. Load the
encoder with `AutoModel` and apply the saved `classifier` layer to the mean:

```python
from pathlib import Path
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer
import torch

folder = Path("PATH/TO/THIS/FOLDER")
tok = AutoTokenizer.from_pretrained(folder)
encoder = AutoModel.from_pretrained(folder, add_pooling_layer=False).eval()
weights = load_file(folder / "model.safetensors")
{example}
with torch.inference_mode():
    hidden = encoder(**inputs).last_hidden_state
    mask = inputs["attention_mask"][..., None].float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    probs = (mean @ weights["classifier.weight"].T + weights["classifier.bias"]).softmax(-1)[0]
print(encoder.config.id2label[int(probs.argmax())])
```"""


def write_model_card(folder: Path, meta: dict, config, log: list[dict]) -> None:
    data = meta.get("data") or {}
    splits = data.get("splits", {})
    split_line = ", ".join(f"{s}: {v['paragraphs']} paragraphs / {len(v['reports'])} reports" for s, v in splits.items())
    epochs = "\n".join(f"| {e['epoch']} | {e['loss']:.4f} | {e['dev_macro_f1']:.3f} | {e['minutes']:.1f} |" for e in log)
    card = f"""---
library_name: transformers
pipeline_tag: text-classification
language: zh
---
# {meta['model_id']}

Labels the paragraphs of people's congress standing committee work reports (人大常委会工作报告)
with the part of the committee's work they report on: {', '.join(f'`{l}`' for l in LABELS)}.
Trained by renda-sections (`make train`).

- **Base model:** `{meta['base_model']}`
- **Trained:** {meta['trained_at']} in **{meta['train_minutes']} minutes** on {meta['threads']} CPU threads
  ({meta.get('epochs_run', len(log))} of {config.epochs} epochs run, best epoch {meta['best_epoch']}, dev macro-F1 {meta['dev_macro_f1']:.3f})
- **Recipe:** {recipe_line(config)}
- **Data:** {', '.join(data.get('corpus', [])) or meta.get('dataset')}; splits grouped by report (seed {data.get('seed', config.seed)}): {split_line}
- **Input:** a text pair: `{config.text_prefix}` + the heading path (part › section › sub-heading,
  joined with ` › `; empty when unknown), then the paragraph. {config.context_dropout:.0%} of training
  rows were read without their path, so the model serves both cases.
- **Window:** {config.max_length} tokens; longer paragraphs are predicted over overlapping windows
  (stride {config.stride}), each with the path in front, whose probabilities are averaged.
- **Whole-report weights** (fitted on the dev split): `{meta.get('combiner')}`
- **Calibration:** {calibration_line(meta)}
{served_parts(meta)}

## Held-out reports (test split: reports the model never saw)

With the heading path:

{per_label_table(meta.get('test_metrics') or {})}

{mode_lines(meta.get('test_metrics') or {})}

## Training log

| epoch | loss | dev macro-F1 | minutes |
|---|---|---|---|
{epochs}

Hyperparameters: `training_config.json`. Label map: `config.json` (`id2label`).

## Load it with transformers

{load_snippet(config)}

Or with renda-sections, which covers long paragraphs with windows: `from model.bert import BertPredictor`.

## Limits

The label is the section the report put the paragraph in; a paragraph alone does not always show
it (a plans paragraph about supervision reads like supervision): give the heading path when you
have it. Whole-report mode (`POST /v1/reports`) combines the model with the heading rules.
"""
    (folder / "README.md").write_text(card, encoding="utf-8")
