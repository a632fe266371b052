"""Entity-level precision / recall / F1 and tag accuracy of BIO tag sequences (seqeval, default
mode: CoNLL evaluation) as an `evaluate` module that loads offline:
`evaluate.load("<pixel_m4>/tools/metrics/seqeval_scores")`."""

# Standalone on purpose: evaluate.load copies this one file into its modules cache, so the four
# metric modules cannot share a helper module; the MetricInfo boilerplate is evaluate's format.

import datasets
import evaluate


class SeqevalScores(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="seqeval entity P/R/F1 (micro over entities) and tag accuracy.",
            citation="",
            inputs_description="predictions, references: lists of tag sequences (str)",
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references):
        from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

        return {
            "precision": float(precision_score(references, predictions, zero_division=0)),
            "recall": float(recall_score(references, predictions, zero_division=0)),
            "f1": float(f1_score(references, predictions, zero_division=0)),
            "accuracy": float(accuracy_score(references, predictions)),
        }
