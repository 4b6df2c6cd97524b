"""A BERT classifier over the mean of the token vectors instead of the [CLS] token.

e5 was pretrained to embed a text as the mean of its token vectors; its [CLS] vector and pooler
were not trained for that (the pooler is not even in the checkpoint). With a few hundred
labelled paragraphs, starting from the representation the encoder was trained to give matters.
Same weight names as `BertForSequenceClassification` (`bert.*`, `classifier.*`) minus the pooler;
`config.pooling = "mean"` marks the folder so loaders pick this class.
"""

from __future__ import annotations

import torch
from transformers import BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class BertForMeanPooledClassification(BertPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        config.pooling = "mean"
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = torch.nn.Dropout(config.hidden_dropout_prob)
        self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], dtype=hidden.dtype, device=hidden.device)
        logits = self.head(hidden, attention_mask)
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def head(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits from the last layer's token vectors: their mean over real tokens, then the classifier."""
        mask = attention_mask[..., None].to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.classifier(self.dropout(pooled))


def head_logits(model, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Either head on the last layer's token vectors (for a top run apart from the model's forward)."""
    if isinstance(model, BertForMeanPooledClassification):
        return model.head(hidden, attention_mask)
    return model.classifier(model.dropout(model.base_model.pooler(hidden)))  # transformers' [CLS] + pooler head


def classifier_class(pooling: str):
    """The model class for a pooling: "mean" (this module) or "cls" (transformers' own head)."""
    from transformers import AutoModelForSequenceClassification

    if pooling == "mean":
        return BertForMeanPooledClassification
    if pooling == "cls":
        return AutoModelForSequenceClassification
    raise ValueError(f"unknown pooling {pooling!r}: use 'mean' or 'cls'")


def load_classifier(model_dir):
    """A trained folder, with the class its config says it was trained as."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    return classifier_class(getattr(config, "pooling", "cls")).from_pretrained(model_dir, config=config)  # config read once
