"""Per-layer analysis of PIXEL-M4 representations (Kesen et al. 2025, section 5).

* Cross-lingual retrieval: sentence embeddings (mean over attended patches, L2-normalised) of
  parallel sentences; each sentence of language A queries all sentences of language B by cosine
  similarity; recall@k = share of queries whose translation ranks in the top k (paper: k = 5).
* Probing (LINSPECTOR-style): a logistic-regression classifier per layer on frozen features of
  words or sentences rendered in isolation; accuracy per layer.
* t-SNE of sentence embeddings per layer, coloured by language.

Features for all three come from `PixelM4Model.embed(..., layers=all)`: [N, num_layers + 1, D],
layer 0 = patch embeddings (+ positions), layer i = output of block i.
"""

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def load_parallel(files: Sequence[str | Path]) -> dict[str, list[str]]:
    """Multi-way parallel sentences from XX-EN JSON Lines files ({"src", "tgt", "src_lang",
    "tgt_lang"} per line, as `examples/data/parallel/*.jsonl`). Line i of every file must share
    the same target sentence, so all languages align; returns {language: sentences}."""
    from datasets import load_dataset

    if not files:
        raise ValueError("load_parallel needs at least one file")
    sentences: dict[str, list[str]] = {}
    for path in files:
        rows = load_dataset("json", data_files=str(path), split="train")
        missing = {"src", "tgt", "src_lang", "tgt_lang"} - set(rows.column_names)
        if missing:
            raise ValueError(
                f"{path}: each line needs src, tgt, src_lang, tgt_lang; missing {sorted(missing)}"
            )
        for side in ("src", "tgt"):
            languages = set(rows[f"{side}_lang"])
            if len(languages) != 1:
                raise ValueError(
                    f"{path}: {side}_lang must be one language, got {sorted(languages)}"
                )
            language, texts = languages.pop(), list(rows[side])
            if language in sentences and sentences[language] != texts:
                raise ValueError(
                    f"{path}: its {language!r} sentences differ from another file's; files must "
                    "be aligned line by line on their shared language"
                )
            sentences[language] = texts
    return sentences


def load_labelled(path: str | Path) -> tuple[list[str], list[str]]:
    """Probing data: JSON Lines with {"text": ..., "label": ...} (e.g. a LINSPECTOR task)."""
    texts, labels = [], []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if "text" not in row or "label" not in row:
                raise ValueError(f"{path}:{number}: each line needs 'text' and 'label'")
            texts.append(row["text"])
            labels.append(str(row["label"]))
    return texts, labels


def language_words(sentences: dict[str, list[str]], languages: Sequence[str], per_language: int):
    """Word-level language identification data: distinct words of each language (words shared by
    two languages dropped), at most `per_language` each, in first-seen order."""
    words = {
        language: dict.fromkeys(w for s in sentences[language] for w in s.split())
        for language in languages
    }
    shared = {
        w
        for a, b in itertools.combinations(languages, 2)
        for w in words[a].keys() & words[b].keys()
    }
    texts, labels = [], []
    for language in languages:
        kept = [w for w in words[language] if w not in shared][:per_language]
        texts += kept
        labels += [language] * len(kept)
    return texts, labels


def layer_features(model, renderer, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """[N, num_layers + 1, D] L2-normalised mean-pooled embeddings of every layer."""
    encoder = getattr(model, "vit", model)
    layers = list(range(encoder.config.num_hidden_layers + 1))
    return encoder.embed(list(texts), renderer, layers=layers, batch_size=batch_size).numpy()


# ---------------------------------------------------------------------------------------------
# Retrieval
# ---------------------------------------------------------------------------------------------


def recall_at_k(
    queries: np.ndarray, keys: np.ndarray, ks: Sequence[int] = (1, 5, 10)
) -> dict[int, float]:
    """Row i of `queries` should retrieve row i of `keys` ([N, D] each, cosine similarity).

    The rank of the true key counts every other key scoring at least as high (ties count against
    the query), so identical keys can never inflate recall.
    """
    queries, keys = np.asarray(queries, dtype=np.float64), np.asarray(keys, dtype=np.float64)
    if queries.ndim != 2 or queries.shape != keys.shape:
        raise ValueError(
            f"queries and keys must both be [N, D]; got {queries.shape} and {keys.shape}"
        )
    if any(not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive ints, got {list(ks)}")
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(1e-12)
    keys = keys / np.linalg.norm(keys, axis=1, keepdims=True).clip(1e-12)
    scores = queries @ keys.T  # [N, N]
    true = np.diag(scores)[:, None]
    others = ~np.eye(len(scores), dtype=bool)
    rank = 1 + ((scores >= true) & others).sum(1)  # 1 = retrieved first
    return {k: float((rank <= k).mean()) for k in ks}


def retrieval_per_layer(
    features: dict[str, np.ndarray], ks: Sequence[int] = (1, 5, 10)
) -> dict[tuple[str, str], dict[int, list[float]]]:
    """For every language pair (A, B) in order: {k: [recall@k of A -> B at each layer]}."""
    results = {}
    for source, target in itertools.combinations(features, 2):
        per_layer = [
            recall_at_k(features[source][:, layer], features[target][:, layer], ks)
            for layer in range(features[source].shape[1])
        ]
        results[(source, target)] = {k: [scores[k] for scores in per_layer] for k in ks}
    return results


def plot_retrieval(results, k: int, path: str | Path) -> Path:
    """One line per language pair: recall@k across layers (paper's Figure 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for (source, target), by_k in results.items():
        axis.plot(range(len(by_k[k])), by_k[k], marker="o", label=f"{source}-{target}")
    axis.set(xlabel="layer", ylabel=f"recall@{k}", ylim=(0, 1.02), title="cross-lingual retrieval")
    axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axis.legend(fontsize="small")
    return _save(figure, path)


# ---------------------------------------------------------------------------------------------
# Probing
# ---------------------------------------------------------------------------------------------


def probe_per_layer(
    features: np.ndarray, labels: Sequence[str], test_size: float = 0.3, seed: int = 0
) -> list[float]:
    """Test accuracy of a logistic-regression probe on each layer's frozen features [N, L+1, D]
    (one stratified train/test split shared by all layers)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    if features.ndim != 3 or len(features) != len(labels):
        raise ValueError(
            f"features must be [N, layers, D] with N = len(labels); got {features.shape}, {len(labels)}"
        )
    if len(set(labels.tolist())) < 2:
        raise ValueError("probing needs at least two distinct labels")
    train, test = train_test_split(
        np.arange(len(labels)), test_size=test_size, random_state=seed, stratify=labels
    )
    accuracies = []
    for layer in range(features.shape[1]):
        probe = LogisticRegression(max_iter=2000)
        probe.fit(features[train, layer], labels[train])
        accuracies.append(float(probe.score(features[test, layer], labels[test])))
    return accuracies


def plot_probing(
    accuracies: dict[str, list[float]], path: str | Path, title: str = "probing"
) -> Path:
    """Accuracy per layer, one line per task (or model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, values in accuracies.items():
        axis.plot(range(len(values)), values, marker="o", label=name)
    axis.set(xlabel="layer", ylabel="probe accuracy", ylim=(0, 1.02), title=title)
    axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axis.legend(fontsize="small")
    return _save(figure, path)


# ---------------------------------------------------------------------------------------------
# t-SNE
# ---------------------------------------------------------------------------------------------


def tsne_grid(
    features: np.ndarray,
    groups: Sequence[str],
    path: str | Path,
    layers: Sequence[int] | None = None,
    seed: int = 0,
) -> Path:
    """t-SNE of [N, L+1, D] features at each of `layers` (default: all), one subplot per layer,
    points coloured by `groups` (e.g. language); writes a PNG grid (paper's Figure 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    groups = np.asarray(groups)
    if features.ndim != 3 or len(features) != len(groups):
        raise ValueError(
            f"features must be [N, layers, D] with N = len(groups); got {features.shape}, {len(groups)}"
        )
    if len(groups) < 5:
        raise ValueError(f"t-SNE needs at least 5 points, got {len(groups)}")
    layers = list(range(features.shape[1])) if layers is None else list(layers)
    columns = min(len(layers), 4)
    rows = -(-len(layers) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows), squeeze=False)
    names = sorted(set(groups.tolist()))
    for axis, layer in zip(axes.flat, layers, strict=False):
        points = TSNE(
            perplexity=min(30.0, (len(groups) - 1) / 3),
            init="pca",
            # exact gradients: O(N^2), yet far faster than Barnes-Hut for up to a few thousand points
            method="exact" if len(groups) <= 3000 else "barnes_hut",
            random_state=seed,
        ).fit_transform(features[:, layer])
        for name in names:
            chosen = groups == name
            axis.scatter(points[chosen, 0], points[chosen, 1], s=6, label=name)
        axis.set_title(f"layer {layer}")
        axis.set_xticks([])
        axis.set_yticks([])
    for axis in list(axes.flat)[len(layers) :]:
        axis.axis("off")
    axes.flat[0].legend(fontsize="small", markerscale=2)
    return _save(figure, path)


def _save(figure, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


__all__ = [
    "load_parallel",
    "load_labelled",
    "language_words",
    "layer_features",
    "recall_at_k",
    "retrieval_per_layer",
    "plot_retrieval",
    "probe_per_layer",
    "plot_probing",
    "tsne_grid",
]
