"""Task metrics for the Trainer's `compute_metrics`: accuracy / macro-F1 (scikit-learn), entity
P/R/F1 (seqeval) and UAS/LAS after greedy (published) or Chu-Liu-Edmonds decoding of the biaffine
parser's scores (`parsing_pixel_m4.decode_trees`, shipped with the model), each through the
package's local `evaluate` modules (tools/metrics/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..parsing_pixel_m4 import decode_trees
from ..processing_pixel_m4 import IGNORE

METRICS_DIR = Path(__file__).resolve().parent / "metrics"


def load_metric(name: str):
    """One of the package's `evaluate` modules (`tools/metrics/<name>/<name>.py`): classification_scores,
    seqeval_scores, attachment_scores, translation_scores. Local files: they load offline."""
    import evaluate

    if name not in _loaded_metrics:
        _loaded_metrics[name] = evaluate.load(str(METRICS_DIR / name))
    return _loaded_metrics[name]


_loaded_metrics: dict = {}


def classification_metrics(eval_prediction) -> dict[str, float]:
    """Trainer `compute_metrics`: accuracy and macro-F1 (the paper's SIB-200 metric), through
    the `classification_scores` evaluate module."""
    logits = eval_prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    predictions, labels = np.asarray(logits).argmax(-1), eval_prediction.label_ids
    return load_metric("classification_scores").compute(
        predictions=predictions.tolist(), references=np.asarray(labels).tolist()
    )


def ner_metrics(id2label: dict[int, str]):
    """Trainer `compute_metrics` for BIO tags: entity-level P/R/F1 (seqeval), tag accuracy,
    through the `seqeval_scores` evaluate module."""

    def compute(eval_prediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        predictions, labels = np.asarray(logits).argmax(-1), eval_prediction.label_ids
        gold, predicted = [], []
        for prediction_row, label_row in zip(predictions, labels, strict=True):
            keep = label_row != IGNORE
            gold.append([id2label[int(i)] for i in label_row[keep]])
            predicted.append([id2label[int(i)] for i in prediction_row[keep]])
        return load_metric("seqeval_scores").compute(predictions=predicted, references=gold)

    return compute


def preprocess_parser_logits(logits, labels, decoding: str = "greedy") -> torch.Tensor:
    """Trainer `preprocess_logits_for_metrics`: decode each batch right away (the
    [B, W, 1+W, R] scores differ in shape between batches and would not concatenate). Bind
    `decoding` with functools.partial (the model's `config.parser_decoding`)."""
    arc_logits, rel_logits, word_mask = logits[:3]
    return decode_trees(arc_logits, rel_logits, word_mask, decoding)


def attachment_scores(pred_heads, pred_rels, gold_heads, gold_rels) -> dict[str, float]:
    """UAS / LAS (percent of scored words with the right head / head and relation).
    Arrays of the same shape; words with gold head -100 are not scored."""
    gold_heads, gold_rels = np.asarray(gold_heads), np.asarray(gold_rels)
    pred_heads, pred_rels = np.asarray(pred_heads), np.asarray(pred_rels)
    scored = gold_heads != IGNORE
    total = max(int(scored.sum()), 1)
    right_head = (pred_heads == gold_heads) & scored
    right_both = right_head & (pred_rels == gold_rels)
    return {"uas": 100.0 * right_head.sum() / total, "las": 100.0 * right_both.sum() / total}


def parsing_metrics(eval_prediction) -> dict[str, float]:
    """Trainer `compute_metrics` for the parser (after `preprocess_parser_logits`)."""
    decoded = np.asarray(eval_prediction.predictions)
    gold_heads, gold_rels = eval_prediction.label_ids
    scores = load_metric("attachment_scores").compute(
        predicted_heads=decoded[..., 0].tolist(),
        predicted_relations=decoded[..., 1].tolist(),
        gold_heads=np.asarray(gold_heads).tolist(),
        gold_relations=np.asarray(gold_rels).tolist(),
    )
    return {name: float(value) for name, value in scores.items()}
