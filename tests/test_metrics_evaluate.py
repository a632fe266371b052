"""The scripts' metrics go through the package's local `evaluate` modules (offline) and give
exactly what the libraries give directly."""

import numpy as np
import pytest
import sacrebleu
from seqeval.metrics import accuracy_score as tag_accuracy
from seqeval.metrics import f1_score as entity_f1
from sklearn.metrics import accuracy_score, f1_score
from transformers import EvalPrediction

from pixel_m4.tools.task_metrics import (
    METRICS_DIR,
    attachment_scores,
    classification_metrics,
    load_metric,
    ner_metrics,
    parsing_metrics,
)


def test_every_module_loads_offline_from_its_folder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import evaluate

    for name in ("classification_scores", "seqeval_scores", "attachment_scores",
                 "translation_scores"):  # fmt: skip
        module = evaluate.load(str(METRICS_DIR / name))
        assert module.name == name


def test_classification_scores_equal_scikit_learn():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(50, 4)), rng.integers(0, 4, 50)
    got = classification_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    predictions = logits.argmax(-1)
    assert got == {
        "accuracy": accuracy_score(labels, predictions),
        "macro_f1": f1_score(labels, predictions, average="macro", zero_division=0),
    }


def test_seqeval_scores_equal_seqeval():
    id2label = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC"}
    labels = np.array([[1, 2, 0, 3, -100], [0, 3, 0, -100, -100]])
    logits = np.eye(4)[[[1, 0, 0, 3, 0], [0, 3, 1, 0, 0]]]
    got = ner_metrics(id2label)(EvalPrediction(predictions=logits, label_ids=labels))
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-LOC", "O"]]
    predicted = [["B-PER", "O", "O", "B-LOC"], ["O", "B-LOC", "B-PER"]]
    assert got["f1"] == entity_f1(gold, predicted) and got["accuracy"] == tag_accuracy(
        gold, predicted
    )


def test_attachment_scores_equal_the_function():
    decoded = np.array([[[2, 1], [0, 0], [2, 3]], [[0, 0], [1, 2], [-100, -100]]])
    gold_heads = np.array([[2, 0, 1], [0, 1, -100]])
    gold_rels = np.array([[1, 0, 3], [0, 1, -100]])
    got = parsing_metrics(EvalPrediction(predictions=decoded, label_ids=(gold_heads, gold_rels)))
    expected = attachment_scores(decoded[..., 0], decoded[..., 1], gold_heads, gold_rels)
    assert got == {name: float(value) for name, value in expected.items()}
    assert got == pytest.approx({"uas": 80.0, "las": 60.0})


def test_translation_scores_equal_sacrebleu():
    hypotheses = ["the cat sat on the mat", "a dog barks", "hello"]
    references = ["the cat sat on a mat", "the dog barks loudly", "hello world"]
    got = load_metric("translation_scores").compute(predictions=hypotheses, references=references)
    assert got == {
        "chrf++": sacrebleu.CHRF(word_order=2).corpus_score(hypotheses, [references]).score,
        "bleu": sacrebleu.BLEU().corpus_score(hypotheses, [references]).score,
    }
