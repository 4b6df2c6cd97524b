"""Shared fixtures: the real corpus when present, and a tiny BERT built here (random weights,
two layers, a character tokenizer) so the training and serving tests run in seconds offline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
STARTER = ROOT / "data" / "starter"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def skip_unless_required(what: str, reason: str) -> None:
    """Skip, with the reason, unless RENDA_REQUIRE (a comma list: browser, ray) says this must run
    here (CI sets it once it has installed them): then it fails instead."""
    if what in os.environ.get("RENDA_REQUIRE", "").split(","):
        pytest.fail(f"{what} is required here (RENDA_REQUIRE) but: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "reports").is_dir():
        pytest.skip("../shared/corpus is not here")
    return CORPUS


@pytest.fixture(scope="session")
def sample_report() -> str:
    return (FIXTURES / "sample_report.txt").read_text(encoding="utf-8")


def build_tiny_base(folder: Path, texts: list[str], layers: int = 2) -> Path:
    """A BERT of `layers` layers (2 by default) with random weights and a one-character-a-token tokenizer."""
    import torch
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    chars = sorted({ch for text in texts for ch in text if not ch.isspace()})
    vocab = {token: i for i, token in enumerate(specials + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\S"), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config_path = folder / "tokenizer_config.json"
    config_json = json.loads(config_path.read_text(encoding="utf-8"))
    config_json["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config_json, ensure_ascii=False), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def starter_dataset(tmp_path_factory) -> Path:
    from training.dataset import build_dataset

    out = tmp_path_factory.mktemp("dataset") / "starter"
    build_dataset([STARTER], out, seed=13, dev_fraction=0.15, test_fraction=0.2)
    return out


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, starter_dataset) -> Path:
    texts = [json.loads(line)["text"] for split in ("train", "dev", "test")
             for line in (starter_dataset / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
    texts.append((FIXTURES / "sample_report.txt").read_text(encoding="utf-8"))
    return build_tiny_base(tmp_path_factory.mktemp("tiny-base"), texts)


def export_that_fails(exported: list):
    """A stand-in for training.export.run_export: records the folder it is given, writes half a file
    there, then fails (for the checks that a failed export publishes nothing)."""
    def run(folder, data, threads):
        exported.append(Path(folder))
        (Path(folder) / "model.onnx").write_bytes(b"half")
        raise RuntimeError("export stopped")
    return run


# freeze_layers=1: the default recipe's frozen, cached bottom, on a 2-layer model
TINY_OVERRIDES = dict(max_length=32, stride=8, text_prefix="", batch_size=8, eval_batch_size=16, epochs=1,
                      max_steps=6, learning_rate=1e-3, head_learning_rate=1e-3, patience=1, freeze_layers=1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, starter_dataset, tiny_base) -> Path:
    """A tiny model trained for a few steps by the project's own training code."""
    from training.config import load_config
    from training.train import train_bert

    out = tmp_path_factory.mktemp("models") / "tiny"
    train_bert(starter_dataset, out, str(tiny_base), load_config(**TINY_OVERRIDES), threads=1, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_onnx_model(tmp_path_factory, tiny_model) -> Path:
    """A copy of the tiny model with its ONNX exports (fp32, int8) and parity record, made by `renda export`'s code."""
    import shutil

    from training.export import run_export

    out = tmp_path_factory.mktemp("models") / "tiny-onnx"
    shutil.copytree(tiny_model, out)
    run_export(out, threads=1)
    return out
