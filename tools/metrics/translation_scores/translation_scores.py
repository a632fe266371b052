"""chrF++ (chrF with word bigrams, word_order=2) and BLEU of translations (sacrebleu's corpus
scores, default settings) as an `evaluate` module that loads offline:
`evaluate.load("<pixel_m4>/tools/metrics/translation_scores")`. One reference per translation."""

# Standalone on purpose: evaluate.load copies this one file into its modules cache, so the four
# metric modules cannot share a helper module; the MetricInfo boilerplate is evaluate's format.

import datasets
import evaluate


class TranslationScores(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="sacrebleu chrF++ and BLEU, one reference per hypothesis.",
            citation="",
            inputs_description="predictions, references: lists of str",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        import sacrebleu

        return {
            "chrf++": sacrebleu.CHRF(word_order=2).corpus_score(predictions, [references]).score,
            "bleu": sacrebleu.BLEU().corpus_score(predictions, [references]).score,
        }
