"""Unlabelled and labelled attachment scores (UAS / LAS, percent) of dependency trees as an
`evaluate` module that loads offline: `evaluate.load("<pixel_m4>/tools/metrics/attachment_scores")`.
One row per sentence; words whose gold head is -100 (padding, truncated) are not scored."""

# Standalone on purpose: evaluate.load copies this one file into its modules cache, so the four
# metric modules cannot share a helper module; the MetricInfo boilerplate is evaluate's format.

import datasets
import evaluate
import numpy as np

IGNORE = -100


class AttachmentScores(evaluate.Metric):
    def _info(self):
        ints = datasets.Sequence(datasets.Value("int64"))
        return evaluate.MetricInfo(
            description="UAS / LAS: percent of scored words with the right head / head and relation.",
            citation="",
            inputs_description=(
                "predicted_heads, predicted_relations, gold_heads, gold_relations: per sentence "
                "one int per word (heads: 0 = ROOT, i = i-th word; -100 = not scored)"
            ),
            features=datasets.Features(
                {
                    "predicted_heads": ints,
                    "predicted_relations": ints,
                    "gold_heads": ints,
                    "gold_relations": ints,
                }
            ),
        )

    def _compute(self, predicted_heads, predicted_relations, gold_heads, gold_relations):
        def flat(rows):
            return np.concatenate([np.asarray(row, dtype=np.int64) for row in rows])

        pred_heads, pred_rels = flat(predicted_heads), flat(predicted_relations)
        gold_heads, gold_rels = flat(gold_heads), flat(gold_relations)
        scored = gold_heads != IGNORE
        total = max(int(scored.sum()), 1)
        right_head = (pred_heads == gold_heads) & scored
        right_both = right_head & (pred_rels == gold_rels)
        return {"uas": 100.0 * right_head.sum() / total, "las": 100.0 * right_both.sum() / total}
