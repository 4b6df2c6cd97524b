"""What pruning the 250k-piece vocabulary to the pieces Chinese text uses does: folder size,
load time, inference and training-step speed, and whether any paragraph tokenises differently
(if none does, predictions are the same). usage: python -m bench.prune --corpus DIR --out FILE"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from model.convert_e5 import convert
from renda.corpus import load_corpus


def folder_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.iterdir()) / 2**20, 1)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return round((time.perf_counter() - started) / repeats, 3)


def measure(folder: Path, texts: list[str]) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=7)
    load_s = round(time.perf_counter() - started, 2)
    batch = tokenizer(["query: " + t for t in texts[:16]], truncation=True, max_length=128, padding=True, return_tensors="pt")

    def forward():
        with torch.inference_mode():
            model.eval()(**batch)

    def step(freeze: bool):
        model.train()
        model.get_input_embeddings().weight.requires_grad_(not freeze)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

        def one():
            loss = model(**batch, labels=torch.zeros(len(texts[:16]), dtype=torch.long)).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        return one

    return {
        "folder_mb": folder_mb(folder),
        "vocab": tokenizer.vocab_size,
        "load_seconds": load_s,
        "forward_16x128_seconds": timed(forward, 5),
        "train_step_frozen_embeddings_seconds": timed(step(True), 3),
        "train_step_all_weights_seconds": timed(step(False), 3),
        "tokens": [tokenizer.tokenize(t) for t in texts],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    texts = [r.text for r in load_corpus(args.corpus).records]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, prune in (("pruned", True), ("full", False)):
            folder = Path(tmp) / name
            convert(folder, prune=prune)
            results[name] = measure(folder, texts)
            print(name, {k: v for k, v in results[name].items() if k != "tokens"}, flush=True)
    same = sum(a == b for a, b in zip(results["pruned"].pop("tokens"), results["full"].pop("tokens")))
    results["paragraphs_tokenised_identically"] = f"{same} of {len(texts)}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
