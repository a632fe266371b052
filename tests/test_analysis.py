"""Per-layer analysis: recall@k on toy cases with known answers, probing, t-SNE, the script."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pixel_m4.tools.analysis import (
    language_words,
    load_parallel,
    probe_per_layer,
    recall_at_k,
    retrieval_per_layer,
    tsne_grid,
)

ROOT = Path(__file__).resolve().parents[1]
PARALLEL = ROOT / "examples" / "data" / "parallel"


def test_identical_sentences_are_always_retrieved():
    vectors = np.random.default_rng(0).normal(size=(12, 8))
    assert recall_at_k(vectors, vectors.copy(), ks=(1, 5, 10)) == {1: 1.0, 5: 1.0, 10: 1.0}


def test_shuffled_keys_give_the_exact_expected_recall():
    # Points on a circle at angles 0, 1, 3, 7, 15, 31 degrees: distances from any point to the
    # others are all distinct, so ranks are exact. Key i is the point of query i + 1 (rotated):
    # query 0 (0 deg) wants 1 deg: 0 deg is closer -> rank 2; query 1 wants 3 (1, 0 closer) -> 3;
    # query 2 -> 4, query 3 -> 5, query 4 -> 6; query 5 (31 deg) wants 0 deg, the farthest -> 6.
    angles = np.radians([0, 1, 3, 7, 15, 31])
    points = np.stack([np.cos(angles), np.sin(angles)], 1)
    keys = np.roll(points, -1, axis=0)
    result = recall_at_k(points, keys, ks=(1, 2, 3, 5, 6))
    assert result == {1: 0.0, 2: 1 / 6, 3: 2 / 6, 5: 4 / 6, 6: 1.0}


def test_ties_count_against_the_query():
    # All keys equal: the true key never beats the others.
    queries = np.eye(3)
    keys = np.ones((3, 3))
    assert recall_at_k(queries, keys, ks=(1, 2, 3)) == {1: 0.0, 2: 0.0, 3: 1.0}


def test_recall_bad_input():
    with pytest.raises(ValueError, match="queries and keys"):
        recall_at_k(np.zeros((3, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="ks must be"):
        recall_at_k(np.eye(3), np.eye(3), ks=(0,))


def test_retrieval_per_layer_covers_every_pair_and_layer():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(10, 3, 4))
    features = {
        "en": base,
        "uk": base + 0.01 * rng.normal(size=base.shape),
        "zh": rng.normal(size=base.shape),
    }
    results = retrieval_per_layer(features, ks=(1, 10))
    assert list(results) == [("en", "uk"), ("en", "zh"), ("uk", "zh")]
    assert results[("en", "uk")][1] == [1.0, 1.0, 1.0]
    assert results[("en", "zh")][10] == [1.0, 1.0, 1.0]  # k = N: always found


def test_shipped_parallel_data_is_multiway_aligned():
    sentences = load_parallel([PARALLEL / f"{lang}-en.jsonl" for lang in ("hi", "uk", "zh")])
    assert set(sentences) == {"en", "hi", "uk", "zh"}
    assert len({len(texts) for texts in sentences.values()}) == 1
    texts, labels = language_words(sentences, ["uk", "zh"], per_language=5)
    assert labels == ["uk"] * 5 + ["zh"] * 5 and len(set(texts)) == 10


def test_misaligned_parallel_files_are_rejected(tmp_path):
    rows = [{"src": "a", "tgt": "x", "src_lang": "uk", "tgt_lang": "en"}]
    other = [{"src": "b", "tgt": "y", "src_lang": "hi", "tgt_lang": "en"}]
    for name, data in (("uk-en.jsonl", rows), ("hi-en.jsonl", other)):
        (tmp_path / name).write_text("\n".join(json.dumps(r) for r in data))
    with pytest.raises(ValueError, match="'en' sentences differ"):
        load_parallel([tmp_path / "uk-en.jsonl", tmp_path / "hi-en.jsonl"])
    (tmp_path / "bad.jsonl").write_text(json.dumps({"text": "a"}))
    with pytest.raises(ValueError, match="missing"):
        load_parallel([tmp_path / "bad.jsonl"])


def test_probe_finds_the_informative_layer():
    rng = np.random.default_rng(0)
    labels = np.array(["a", "b"] * 40)
    features = rng.normal(size=(80, 3, 6))
    features[:, 2, 0] += np.where(labels == "a", 4.0, -4.0)  # only layer 2 carries the label
    accuracies = probe_per_layer(features, labels)
    assert accuracies[2] == 1.0 and max(accuracies[:2]) < 0.8
    with pytest.raises(ValueError, match="two distinct labels"):
        probe_per_layer(features, ["a"] * 80)


def test_tsne_grid_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(20, 3, 5))
    path = tsne_grid(features, ["en"] * 10 + ["zh"] * 10, tmp_path / "tsne.png", layers=[0, 2])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="N = len"):
        tsne_grid(features, ["en"] * 3, tmp_path / "x.png")


@pytest.mark.slow  # the script end to end
def test_run_analysis_script_writes_all_plots(load_script, monkeypatch, tmp_path):
    out = tmp_path / "analysis"
    load_script("run_analysis", monkeypatch).main(["--random_model_preset", "test", "--max_sentences", "16",
                        "--probe_words_per_language", "16", "--output_dir", str(out)])  # fmt: skip
    for name in ("retrieval.png", "probing.png", "tsne.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    results = json.loads((out / "results.json").read_text())
    assert set(results["retrieval"]) == {"en-hi", "en-uk", "en-zh", "hi-uk", "hi-zh", "uk-zh"}
    assert all(
        len(by_k["5"]) == 3 for by_k in results["retrieval"].values()
    )  # 2 blocks + embeddings
    (accuracies,) = results["probing"].values()
    assert len(accuracies) == 3 and all(0 <= a <= 1 for a in accuracies)
    assert not math.isnan(sum(accuracies))


def test_run_analysis_rejects_unknown_analysis(load_script, monkeypatch):
    with pytest.raises(ValueError, match=r"--analyses: unknown \['umap'\]"):
        load_script("run_analysis", monkeypatch).main(["--analyses", "umap"])
