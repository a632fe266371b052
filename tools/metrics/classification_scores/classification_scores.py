"""Accuracy and macro-F1 (scikit-learn) as an `evaluate` module that loads offline:
`evaluate.load("<pixel_m4>/tools/metrics/classification_scores")`. Macro-F1 is the PIXEL-M4 paper's
SIB-200 metric; classes without predictions count as F1 0 (zero_division=0)."""

# Standalone on purpose: evaluate.load copies this one file into its modules cache, so the four
# metric modules cannot share a helper module; the MetricInfo boilerplate is evaluate's format.

import datasets
import evaluate


class ClassificationScores(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Accuracy and macro-averaged F1 of class ids.",
            citation="",
            inputs_description="predictions, references: lists of int class ids",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        from sklearn.metrics import accuracy_score, f1_score

        return {
            "accuracy": float(accuracy_score(references, predictions)),
            "macro_f1": float(f1_score(references, predictions, average="macro", zero_division=0)),
        }
