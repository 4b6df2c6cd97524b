"""Train only the top of the encoder: the embeddings and the bottom layers frozen, and their output
computed once per distinct window, then reused by every epoch, fold and recipe that shares them.

With a few hundred labelled paragraphs, an encoder that moves all its layers overfits the training
reports; frozen lower layers keep e5's general reading of the text. Frozen layers also give the same
output for a window every time (they run without dropout), so that output is a pure function of
the window's token ids: `BottomCache` keeps it, and an epoch runs only the top layers and the head.
The published model is the plain full model: caching changes the cost of training, not the model.
"""

from __future__ import annotations

import numpy as np
import torch

from model.bert import BertPredictor, Features, pad_features, token_budget_batches


def encoder_of(model):
    """The BERT-family encoder inside a classifier (its embeddings and `encoder.layer` list)."""
    encoder = model.base_model
    if not hasattr(encoder, "embeddings") or not hasattr(getattr(encoder, "encoder", None), "layer"):
        raise ValueError(f"{type(model).__name__}: freezing layers needs a BERT-style encoder (embeddings + encoder.layer)")
    return encoder


def freeze_bottom(model, layers: int) -> None:
    """No gradient for the embeddings and the bottom `layers` transformer layers."""
    encoder = encoder_of(model)
    if not 0 < layers < len(encoder.encoder.layer):
        raise ValueError(f"freeze_layers must be between 1 and {len(encoder.encoder.layer) - 1}, got {layers}")
    for module in (encoder.embeddings, *encoder.encoder.layer[:layers]):
        module.requires_grad_(False)


def run_layers(encoder, hidden: torch.Tensor, mask: torch.Tensor, layers) -> torch.Tensor:
    """`hidden` (batch, tokens, size) through `layers` with the padding mask, as BertModel runs them."""
    from transformers.masking_utils import create_bidirectional_mask

    attention = create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden, attention_mask=mask)
    for layer in layers:
        hidden = layer(hidden, attention)
    return hidden


def pad_rows(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-window hidden states (tokens_i, size) right-padded with zeros, and the padding mask."""
    width = max(len(r) for r in rows)
    hidden = rows[0].new_zeros((len(rows), width, rows[0].shape[-1]))
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        hidden[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return hidden, mask


class BottomCache:
    """Hidden states after the embeddings and the bottom `layers` layers, one (tokens, size) tensor
    per distinct window (its token ids). Valid for one set of frozen weights: `owner` names them
    (the base model), and a cache is never used with another."""

    def __init__(self, layers: int, owner: str = "", max_batch_tokens: int = 4096):
        self.layers, self.owner, self.max_batch_tokens = layers, owner, max_batch_tokens
        self.store: dict[tuple[int, ...], torch.Tensor] = {}
        self.computed = 0  # windows run through the bottom (misses), for the log

    def check(self, layers: int, owner: str) -> None:
        if (layers, owner) != (self.layers, self.owner):
            raise ValueError(f"a cache of {self.owner!r} below layer {self.layers} used for {owner!r} below layer {layers}")

    def hidden(self, encoder, windows: list[Features]) -> list[torch.Tensor]:
        """Each window's bottom output, computing the missing ones in length-sorted batches."""
        keys = [window_key(w) for w in windows]
        missing: dict[tuple, Features] = {}
        for key, window in zip(keys, windows):
            if key not in self.store:
                missing.setdefault(key, window)
        size = {k: len(w["input_ids"]) for k, w in missing.items()}
        todo = sorted(missing, key=size.__getitem__)
        pad_id = encoder.config.pad_token_id or 0
        was_training = encoder.training
        encoder.eval()  # frozen layers run without dropout: the same output every time
        for rows in token_budget_batches([size[k] for k in todo], self.max_batch_tokens):
            batch = [todo[r] for r in rows]
            inputs = {k: torch.from_numpy(v) for k, v in pad_features([missing[k] for k in batch], pad_id).items()}
            with torch.no_grad():  # not inference_mode: these tensors later feed layers that train
                embedded = encoder.embeddings(input_ids=inputs["input_ids"], token_type_ids=inputs.get("token_type_ids"))
                out = run_layers(encoder, embedded, inputs["attention_mask"], encoder.encoder.layer[: self.layers])
            for i, key in enumerate(batch):
                self.store[key] = out[i, : size[key]].clone()
            self.computed += len(batch)
        encoder.train(was_training)
        return [self.store[k] for k in keys]

    def logits(self, model, windows: list[Features]) -> torch.Tensor:
        """The classifier's logits for unpadded windows: cached bottom, then the top layers and head."""
        from model.pooling import head_logits

        encoder = encoder_of(model)
        hidden, mask = pad_rows(self.hidden(encoder, windows))
        hidden = run_layers(encoder, hidden, mask, encoder.encoder.layer[self.layers:])
        return head_logits(model, hidden, mask)


def window_key(window: Features) -> tuple:
    """What a frozen bottom's output depends on: the token ids (and token types, where a model has them)."""
    return tuple(window["input_ids"]) + tuple(window.get("token_type_ids") or ())


class CachedBottomPredictor(BertPredictor):
    """The torch predictor of a model in training whose bottom is frozen: the same windows and
    batches as `BertPredictor`, with the frozen part read from the cache (dev scoring every epoch,
    and the held-out folds of cross-validation)."""

    def __init__(self, model, tokenizer, meta: dict, max_length: int, stride: int, prefix: str, batch_size: int,
                 bottom: BottomCache):
        super().__init__(model, tokenizer, meta, max_length, stride, prefix, batch_size)
        self.bottom = bottom

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        lengths = batch["attention_mask"].sum(axis=1)
        windows = [{k: v[i, :n].tolist() for k, v in batch.items()} for i, n in enumerate(lengths)]
        with torch.no_grad():
            return self.bottom.logits(self.model, windows).float().numpy()
