"""Data and metrics for fine-tuning PIXEL-M4: classification, NER and dependency parsing.

What the `examples/run_*.py` scripts share lives here, so the scripts stay thin:

* readers for CoNLL (token TAB tag) and CoNLL-U files (multiword-token ranges and empty nodes
  skipped), and loading of local files or Hub datasets into a `DatasetDict`;
* label vocabularies with errors for labels a split does not know;
* collators that render text on the fly and, for word-level tasks, turn the renderer's
  word -> patch spans into `word_spans` [B, W, 2] tensors aligned with the word labels;
* metrics: accuracy / macro-F1 (scikit-learn), entity P/R/F1 (seqeval), and UAS/LAS after
  greedy (published) or Chu-Liu-Edmonds decoding of the biaffine parser's scores;
* `--recipe` handling (`sample` for the shipped data on a CPU, `paper` for Table 7).

Truncation: a text longer than the renderer's `max_seq_length` loses whole words from its end.
Those words get no patches; their labels become -100, so they are left out of the loss and of
the metrics (as when a tokenizer truncates). `truncation_report` counts them per split.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..rendering_pixel_m4 import PixelM4TextRenderer, clean_words

logger = logging.getLogger(__name__)

IGNORE = -100

# ---------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------


def read_conll(path: str | Path) -> list[dict]:
    """CoNLL NER file -> [{"tokens": [...], "tags": [...]}], one per sentence.

    One token per line, its tag in the last (tab- or space-separated) column; blank lines end a
    sentence; `-DOCSTART-` lines are skipped.
    """
    sentences, tokens, tags = [], [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                if tokens:
                    sentences.append({"tokens": tokens, "tags": tags})
                    tokens, tags = [], []
                continue
            columns = line.split("\t") if "\t" in line else line.split()
            if columns[0] == "-DOCSTART-":
                continue
            if len(columns) < 2:
                raise ValueError(
                    f"{path}:{number}: expected 'token<TAB>tag', got {line!r} (no tag column)"
                )
            tokens.append(columns[0])
            tags.append(columns[-1].strip())
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags})
    return sentences


def read_conllu(path: str | Path) -> list[dict]:
    """CoNLL-U file -> [{"tokens", "heads", "deprels"}], one per sentence (syntactic words only).

    Multiword-token lines (ID `3-4`) and empty nodes (ID `5.1`) are skipped: the words of a
    multiword token carry the tree, empty nodes belong to enhanced dependencies only. Heads are
    ints (0 = root, i = the i-th word, 1-based). Word IDs must run 1..n and heads lie in 0..n.
    """
    sentences, rows, first_line = [], [], 0

    def finish():
        if not rows:
            return
        ids = [row[0] for row in rows]
        if ids != list(range(1, len(rows) + 1)):
            raise ValueError(
                f"{path}:{first_line}: word IDs must run 1..{len(rows)}, got {ids[:10]}..."
            )
        heads = [row[2] for row in rows]
        for _, _, head, _, number in rows:
            if not 0 <= head <= len(rows):
                raise ValueError(
                    f"{path}:{number}: HEAD {head} is outside 0..{len(rows)} (sentence length)"
                )
        problem = tree_problem(heads)
        if problem:
            raise ValueError(f"{path}:{first_line}: {problem}")
        sentences.append(
            {
                "tokens": [row[1] for row in rows],
                "heads": heads,
                "deprels": [row[3] for row in rows],
            }
        )
        rows.clear()

    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                finish()
                continue
            if line.startswith("#"):
                continue
            columns = line.split("\t")
            if len(columns) != 10:
                raise ValueError(
                    f"{path}:{number}: a CoNLL-U word line has 10 tab-separated columns, "
                    f"got {len(columns)}: {line!r}"
                )
            word_id = columns[0]
            if "-" in word_id or "." in word_id:  # multiword token range / empty node
                continue
            if not rows:
                first_line = number
            try:
                rows.append((int(word_id), columns[1], int(columns[6]), columns[7], number))
            except ValueError:
                raise ValueError(
                    f"{path}:{number}: ID and HEAD must be integers, got {word_id!r} and "
                    f"{columns[6]!r}"
                ) from None
    finish()
    return sentences


def tree_problem(heads: Sequence[int]) -> str | None:
    """What makes `heads` (0 = root, i = the i-th word) not a tree, or None."""
    if heads.count(0) != 1:
        return f"a sentence must have exactly one root (HEAD 0), got {heads.count(0)}"
    for word, head in enumerate(heads, 1):
        if head == word:
            return f"word {word} is its own head (a self-loop)"
    for word in range(1, len(heads) + 1):
        seen, node = set(), word
        while node != 0:  # follow heads to the root; at most len(heads) steps
            if node in seen:
                return f"the heads form a cycle through word {node}"
            seen.add(node)
            node = heads[node - 1]
    return None


def load_splits(
    dataset_name: str | None,
    dataset_config_name: str | None,
    data_files: dict[str, str | None],
):
    """A `DatasetDict` from a Hub dataset (`datasets.load_dataset`) or local files.

    Local files by extension: .conll/.txt (CoNLL NER), .conllu, .csv, .tsv, .json/.jsonl.
    """
    import datasets

    if dataset_name:
        return datasets.load_dataset(dataset_name, dataset_config_name)
    files = {split: path for split, path in data_files.items() if path}
    if not files:
        raise ValueError("give --dataset_name or at least --train_file")
    for split, path in files.items():
        if not Path(path).is_file():
            raise FileNotFoundError(f"{split} file {path!r} does not exist")
    suffixes = {Path(path).suffix.lower() for path in files.values()}
    if len(suffixes) != 1:
        raise ValueError(f"all data files must have the same format, got {sorted(suffixes)}")
    suffix = suffixes.pop()
    if suffix in (".conll", ".conllu", ".txt"):
        reader = read_conllu if suffix == ".conllu" else read_conll
        splits = {}
        for split, path in files.items():
            sentences = reader(path)
            if not sentences:
                raise ValueError(f"{split} file {path!r} holds no sentences")
            splits[split] = datasets.Dataset.from_list(sentences)
        return datasets.DatasetDict(splits)
    builders = {".csv": ("csv", {}), ".tsv": ("csv", {"delimiter": "\t"}), ".json": ("json", {})}
    builders[".jsonl"] = builders[".json"]
    if suffix not in builders:
        raise ValueError(
            f"unsupported data file format {suffix!r}: use .conll, .conllu, .csv, .tsv or .json"
        )
    builder, options = builders[suffix]
    splits = {}
    for split, path in files.items():  # one by one, so an error can name its file
        try:
            splits[split] = datasets.load_dataset(builder, data_files={split: path}, **options)[
                split
            ]
        except Exception as error:
            cause = error.__cause__ or error
            raise ValueError(
                f"{split} file {path!r} cannot be read as {suffix[1:]}: "
                f"{type(cause).__name__}: {cause}"
            ) from error
        if not len(splits[split]):
            raise ValueError(f"{split} file {path!r} holds no rows")
    return datasets.DatasetDict(splits)


# ---------------------------------------------------------------------------------------------
# Row checks: every row of every split is checked before training starts
# ---------------------------------------------------------------------------------------------

_TAG = re.compile(r"^(O|[BIES]-.+)$")  # IOB2 / BIOES, as seqeval reads them


def _text_problem(name: str, text) -> str | None:
    if not isinstance(text, str):
        return f"{name} is {'missing' if text is None else type(text).__name__}"
    if not clean_words(text):
        return f"{name} has nothing to render (empty, spaces or control characters only)"
    return None


def classification_row_problem(row: dict, text: str, label: str, pair: str | None) -> str | None:
    """Why a classification row cannot be used, or None."""
    problem = _text_problem(text, row.get(text))
    if problem is None and pair is not None:
        problem = _text_problem(pair, row.get(pair))
    if problem is None and (row.get(label) is None or str(row.get(label)).strip() == ""):
        problem = f"{label} is missing"
    return problem


def token_row_problem(row: dict, tokens: str, fields: Sequence[str]) -> str | None:
    """Why a row of a word-level task cannot be used: no tokens, a token with nothing to render
    (U+200B, a lone no-break space), a label list of another length, a missing label."""
    words = row.get(tokens)
    if not isinstance(words, list) or not words:
        return f"{tokens} is empty"
    for index, word in enumerate(words):
        if not isinstance(word, str) or not clean_words(word):
            return (
                f"token {index + 1} ({word!r}) has nothing to render (empty, spaces or "
                "invisible/control characters only)"
            )
    for name in fields:
        values = row.get(name)
        if not isinstance(values, list) or len(values) != len(words):
            count = len(values) if isinstance(values, list) else values
            return f"{len(words)} tokens but {count} {name}"
        if any(value is None or str(value).strip() == "" for value in values):
            return f"a {name} entry is missing"
    return None


def ner_row_problem(row: dict, tokens: str, tags: str) -> str | None:
    problem = token_row_problem(row, tokens, [tags])
    if problem is None:
        for index, tag in enumerate(row[tags]):
            if isinstance(tag, str) and not _TAG.match(tag):
                return f"tag {index + 1} ({tag!r}) is not a BIO tag (O, B-TYPE, I-TYPE)"
    return problem


def parsing_row_problem(row: dict, tokens: str, heads: str, deprels: str) -> str | None:
    problem = token_row_problem(row, tokens, [heads, deprels])
    if problem is None:
        try:
            values = [int(head) for head in row[heads]]
        except (TypeError, ValueError):
            return f"{heads} must be integers, got {row[heads][:10]}"
        if not all(0 <= head <= len(values) for head in values):
            return f"{heads} must lie in 0..{len(values)} (0 = root), got {values[:10]}"
        problem = tree_problem(values)
    return problem


def check_rows(splits, problem, files: dict | None = None, skip: bool = False):
    """Checks every row of every split with `problem(row) -> str | None` before training.

    Invalid rows raise one ValueError naming the file (or split), their count and the first
    few row numbers (1-based data rows; in a CSV/TSV file row N is line N + 1), or with
    `skip` are dropped with a warning. Returns (splits, {split: number of rows dropped}).
    """
    import datasets

    kept, skipped = {}, {}
    for split, dataset in splits.items():
        bad = [
            (number, reason)
            for number, row in enumerate(dataset, 1)
            if (reason := problem(row)) is not None
        ]
        where = f"{split} file {files[split]!r}" if files and files.get(split) else f"{split} split"
        if bad and not skip:
            examples = "; ".join(f"row {number}: {reason}" for number, reason in bad[:5])
            raise ValueError(
                f"{where}: {len(bad)} invalid row(s) of {len(dataset)}, first: {examples}. "
                "Fix them, or pass --skip_invalid_rows to leave them out (counted in the "
                "results file)"
            )
        if bad:
            logger.warning(
                "%s: skipping %d invalid row(s), first: %s",
                where,
                len(bad),
                ", ".join(str(number) for number, _ in bad[:5]),
            )
            dropped = {number - 1 for number, _ in bad}
            dataset = dataset.select([i for i in range(len(dataset)) if i not in dropped])
            if not len(dataset):
                raise ValueError(f"{where}: every row is invalid; nothing is left to use")
        kept[split], skipped[split] = dataset, len(bad)
    return datasets.DatasetDict(kept), skipped


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------


def label_list(values, minimum: int = 1) -> list[str]:
    """Sorted label names seen in `values` (a list of labels or of label lists); fewer than
    `minimum` is an error (a classifier needs two: with one, transformers would silently
    build a regression head)."""
    names = set()
    for value in values:
        names.update(value if isinstance(value, list) else [value])
    if None in names:
        raise ValueError("a label is missing (None); check_rows finds such rows first")
    if len(names) < minimum:
        raise ValueError(
            f"the training split has {len(names)} distinct label(s) {sorted(map(str, names))}; "
            f"at least {minimum} are needed"
        )
    return sorted(str(name) for name in names)


def encode_labels(values, label2id: dict[str, int], where: str):
    """Label names (or lists of them) -> ids; an unknown label is an error naming it."""

    def encode(name, index):
        try:
            return label2id[str(name)]
        except KeyError:
            raise ValueError(
                f"unknown label {name!r} in {where} (example {index}); the model knows "
                f"{sorted(label2id)[:20]}{'...' if len(label2id) > 20 else ''}; labels come from "
                "the training split (or the model's config.label2id)"
            ) from None

    return [
        [encode(name, index) for name in value] if isinstance(value, list) else encode(value, index)
        for index, value in enumerate(values)
    ]


# ---------------------------------------------------------------------------------------------
# Rendering and word alignment
# ---------------------------------------------------------------------------------------------


def token_patch_spans(
    tokens: Sequence[str], rendered_spans: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Patch span of each token, from the renderer's spans of the words of " ".join(tokens).

    The renderer splits text on whitespace, so a token holding spaces (Vietnamese syllables,
    "New York" as one token) is several rendered words: its span runs from its first word's
    start to its last word's end. Tokens lost to truncation get the empty span (0, 0).
    """
    spans, word = [], 0
    for index, token in enumerate(tokens):
        count = len(clean_words(token))
        if count == 0:
            raise ValueError(
                f"token {index} ({token!r}) has nothing to render (only whitespace / control "
                "characters); remove it or replace it with a visible placeholder"
            )
        if word + count <= len(rendered_spans):
            spans.append((rendered_spans[word][0], rendered_spans[word + count - 1][1]))
        else:
            spans.append((0, 0))
        word += count
    return spans


def pad_to_patches(batch: dict, num_patches: int) -> dict:
    """Pad a rendered batch (renderer max_seq_length S <= model num_patches L) with white,
    unattended patches, so that a renderer truncating at 256 patches feeds a 529-patch model."""
    pixel_values, attention_mask = batch["pixel_values"], batch["attention_mask"]
    missing = num_patches - attention_mask.shape[1]
    if missing < 0:
        raise ValueError(
            f"the renderer makes {attention_mask.shape[1]} patches but the model reads only "
            f"{num_patches}: lower the renderer's max_seq_length (--max_seq_length)"
        )
    if missing:
        patch = pixel_values.shape[2]
        white = pixel_values.new_full(
            (*pixel_values.shape[:3], missing * patch),
            255 if pixel_values.dtype == torch.uint8 else 1,
        )
        pixel_values = torch.cat([pixel_values, white], 3)
        attention_mask = torch.cat(
            [attention_mask, attention_mask.new_zeros(attention_mask.shape[0], missing)], 1
        )
    return {"pixel_values": pixel_values, "attention_mask": attention_mask}


def render_batch(
    renderer: PixelM4TextRenderer,
    texts: list[str] | list[list[str]],
    pairs: list[str] | None,
    num_patches: int,
    padding: str,
    pad_to_multiple_of: int | None,
    **kwargs,
):
    """Render for a model of `num_patches` patches. "longest" pads to the batch's longest text
    (the model reads any width up to num_patches, with the same outputs); "max_length" pads
    every strip to the model's full width, as the published fine-tuning did."""
    rendered = renderer(
        texts,
        pairs,
        return_tensors="pt",
        padding=padding,
        pad_to_multiple_of=pad_to_multiple_of,
        **kwargs,
    )
    inputs = (
        pad_to_patches(rendered, num_patches)
        if padding == "max_length"
        else {
            "pixel_values": rendered["pixel_values"],
            "attention_mask": rendered["attention_mask"],
        }
    )
    return rendered, inputs


def check_lengths(renderer: PixelM4TextRenderer, num_patches: int) -> None:
    if renderer.max_seq_length > num_patches:
        raise ValueError(
            f"--max_seq_length ({renderer.max_seq_length} patches) exceeds the model's "
            f"{num_patches} patches: give at most {num_patches}"
        )


@dataclass
class SequenceClassificationCollator:
    """Examples {"text", ["text_pair"], "labels"} -> pixel_values, attention_mask, labels.

    `padding`: "longest" (default: strips as wide as the batch's longest text) or "max_length"
    (the model's full num_patches); see `render_batch`."""

    renderer: PixelM4TextRenderer
    num_patches: int
    padding: str = "longest"
    pad_to_multiple_of: int | None = None
    output_format: str = "uint8"  # the compact format: 12x fewer bytes across worker boundaries

    def __post_init__(self):
        check_lengths(self.renderer, self.num_patches)

    def __call__(self, features: list[dict]) -> dict:
        texts = [feature["text"] for feature in features]
        pairs = (
            [feature["text_pair"] for feature in features] if "text_pair" in features[0] else None
        )
        _, batch = render_batch(
            self.renderer,
            texts,
            pairs,
            self.num_patches,
            self.padding,
            self.pad_to_multiple_of,
            output_format=self.output_format,
        )
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([feature["labels"] for feature in features])
        return batch


@dataclass
class WordTaskCollator:
    """Examples {"tokens", <label fields>: one label per token} -> pixel_values, attention_mask,
    word_spans [B, W, 2] and each label field padded to [B, W] with -100.

    Words without patches (truncated) get -100 labels. `head_fields` hold head indices
    (0 = root, i = i-th word): arcs to a truncated head cannot be scored and become -100 too,
    and so do the labels of the other fields at those words. `score_truncated_words=True`
    keeps all labels instead (the published parser data, pixel/data/datasets/ud_dataset.py: a
    truncated word is still scored, from a zero vector).
    """

    renderer: PixelM4TextRenderer
    num_patches: int
    label_fields: tuple[str, ...] = ("labels",)
    head_fields: tuple[str, ...] = ()
    score_truncated_words: bool = False
    padding: str = "longest"
    pad_to_multiple_of: int | None = None
    output_format: str = "uint8"  # the compact format: 12x fewer bytes across worker boundaries

    def __post_init__(self):
        check_lengths(self.renderer, self.num_patches)

    def __call__(self, features: list[dict]) -> dict:
        # word lists: right-to-left tokens keep their order (the published renderer's rule)
        words = [list(feature["tokens"]) for feature in features]
        rendered, batch = render_batch(
            self.renderer,
            words,
            None,
            self.num_patches,
            self.padding,
            self.pad_to_multiple_of,
            return_word_spans=True,
            is_split_into_words=True,
            output_format=self.output_format,
        )
        num_words = max(len(feature["tokens"]) for feature in features)
        word_spans = torch.zeros(len(features), num_words, 2, dtype=torch.long)
        labels = {
            name: torch.full((len(features), num_words), IGNORE, dtype=torch.long)
            for name in self.label_fields
        }
        for row, (feature, spans) in enumerate(
            zip(features, rendered["word_patch_spans"], strict=True)
        ):
            tokens = feature["tokens"]
            self.check_example(feature)
            aligned = torch.tensor(token_patch_spans(tokens, spans), dtype=torch.long)
            word_spans[row, : len(tokens)] = aligned
            present = aligned[:, 1] > aligned[:, 0]
            head_present = torch.cat([torch.ones(1, dtype=torch.bool), present])  # ROOT first
            if self.score_truncated_words:
                scorable = torch.ones_like(present)
            else:
                scorable = present.clone()
                for name in self.head_fields:
                    scorable &= head_present[torch.tensor(feature[name])]
            for name in self.label_fields:
                labels[name][row, : len(tokens)] = torch.tensor(feature[name]).masked_fill(
                    ~scorable, IGNORE
                )
        batch["word_spans"] = word_spans
        batch.update(labels)
        return batch

    def check_example(self, feature: dict) -> None:
        """One label per token; heads point at words of the sentence (0..n)."""
        tokens = feature["tokens"]
        if not tokens:
            raise ValueError("an example has no tokens; drop empty sentences from the data")
        for name in self.label_fields:
            if len(feature[name]) != len(tokens):
                raise ValueError(
                    f"example has {len(tokens)} tokens but {len(feature[name])} {name}: "
                    f"{tokens[:8]}..."
                )
        for name in self.head_fields:
            if not all(0 <= head <= len(tokens) for head in feature[name]):
                raise ValueError(
                    f"{name} must be heads in 0..{len(tokens)} (0 = root) for a sentence of "
                    f"{len(tokens)} words, got {feature[name]}"
                )


def truncation_report(renderer: PixelM4TextRenderer, dataset) -> dict[str, int]:
    """How many examples of a prepared split ("text" [+ "text_pair"] or "tokens" column) lost
    words to truncation, and how many words they lost."""
    words = "tokens" in dataset.column_names
    if words:
        texts, pairs = dataset["tokens"], None
    else:
        texts = dataset["text"]
        pairs = dataset["text_pair"] if "text_pair" in dataset.column_names else None
    overflow = [
        renderer.render(text, pair, is_split_into_words=words).overflow
        for text, pair in zip(texts, pairs or [None] * len(texts), strict=True)
    ]
    return {
        "truncated_examples": sum(1 for count in overflow if count),
        "truncated_words": int(sum(overflow)),
    }


# ---------------------------------------------------------------------------------------------
# Metrics: classification and NER
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Dependency parsing: tree decoding and attachment scores
# ---------------------------------------------------------------------------------------------


def _find_cycle(heads: np.ndarray) -> list[int] | None:
    """Nodes of one cycle of the head graph (node 0 = ROOT has no head), or None."""
    state = np.zeros(len(heads), dtype=np.int8)  # 0 unseen, 1 on the current path, 2 done
    state[0] = 2
    for start in range(1, len(heads)):
        path, node = [], start
        while state[node] == 0:
            state[node] = 1
            path.append(node)
            node = heads[node]
        if state[node] == 1:
            return path[path.index(node) :]
        state[path] = 2
    return None


def chu_liu_edmonds(scores: np.ndarray) -> np.ndarray:
    """Maximum spanning arborescence rooted at node 0.

    scores [N, N]: scores[d, h] = score of h as head of d (-inf = forbidden). Returns heads [N]
    (heads[0] = -1). Greedy heads; while they contain a cycle, contract it into one node
    (arcs into it scored relative to the cycle arc they replace), solve, expand.
    """
    scores = np.array(scores, dtype=np.float64)
    scores[0] = -np.inf
    np.fill_diagonal(scores, -np.inf)
    heads = scores.argmax(1)
    heads[0] = -1
    cycle = _find_cycle(heads)
    if cycle is None:
        return heads
    cycle = np.array(cycle)
    outside = np.flatnonzero(~np.isin(np.arange(len(scores)), cycle))  # node 0 first
    size = len(outside)
    # entering the cycle at c from outside head h replaces the cycle arc into c
    gain = scores[np.ix_(cycle, outside)] - scores[cycle, heads[cycle]][:, None]  # [C, size]
    to_outside = scores[np.ix_(outside, cycle)]  # [size, C]: cycle nodes as heads of outside
    contracted = np.full((size + 1, size + 1), -np.inf)
    contracted[:size, :size] = scores[np.ix_(outside, outside)]
    contracted[size, :size] = gain.max(0)
    contracted[:size, size] = to_outside.max(1)
    sub_heads = chu_liu_edmonds(contracted)

    result = heads.copy()
    for index, node in enumerate(outside[1:], 1):
        head = sub_heads[index]
        result[node] = outside[head] if head < size else cycle[to_outside[index].argmax()]
    entry_head = sub_heads[size]
    result[cycle[gain[:, entry_head].argmax()]] = outside[entry_head]
    return result


def mst_tree(scores: np.ndarray) -> np.ndarray:
    """Best tree with exactly one word attached to ROOT (UD trees have one root).

    scores [1+n, 1+n] (dependent, head), node 0 = ROOT. If the unconstrained MST has several
    root children, every word is tried as the only one and the best tree kept.
    """
    scores = np.array(scores, dtype=np.float64)
    heads = chu_liu_edmonds(scores)
    if np.count_nonzero(heads[1:] == 0) == 1:
        return heads
    words = np.arange(1, len(scores))
    best, best_score = heads, -np.inf
    for root in words:
        constrained = scores.copy()
        constrained[1:, 0] = -np.inf
        constrained[root, 0] = scores[root, 0]
        candidate = chu_liu_edmonds(constrained)
        total = scores[words, candidate[1:]].sum()
        if total > best_score:
            best, best_score = candidate, total
    return best


def decode_trees(
    arc_logits: torch.Tensor,
    rel_logits: torch.Tensor,
    word_mask: torch.Tensor,
    decoding: str = "greedy",
) -> torch.Tensor:
    """Parser outputs -> [B, W, 2] (head, relation id) per word; each word's best relation for
    its chosen head.

    `greedy` (the published evaluation, pixel/trainer.py PIXELTrainerForBiaffineParsing): each
    word's highest-scoring head among all candidates, for every word position (padding positions
    too: metrics skip words whose gold head is -100); the result need not be a tree.
    `mst`: per sentence, the maximum spanning tree with one root over the log-probabilities of
    the heads of its rendered words (`word_mask`); other words get -100.
    """
    if decoding not in ("greedy", "mst"):
        raise ValueError(f"decoding must be 'greedy' or 'mst', got {decoding!r}")
    rel_ids = rel_logits.detach().argmax(-1).cpu()  # [B, W, 1+W]
    if decoding == "greedy":
        heads = arc_logits.detach().argmax(-1).cpu()  # [B, W]
        return torch.stack([heads, rel_ids.gather(2, heads[..., None])[..., 0]], -1)
    log_probs = torch.log_softmax(arc_logits.detach().float(), -1).cpu().numpy()
    rel_ids = rel_ids.numpy()
    word_mask = word_mask.bool().cpu().numpy()
    decoded = np.full((*word_mask.shape, 2), IGNORE, dtype=np.int64)
    for row in range(len(word_mask)):
        words = np.flatnonzero(word_mask[row])
        if not len(words):
            continue
        nodes = np.concatenate([[0], words + 1])  # ROOT + the rendered words, as head indices
        scores = np.full((len(nodes), len(nodes)), -np.inf)
        scores[1:] = log_probs[row][np.ix_(words, nodes)]
        heads = nodes[mst_tree(scores)[1:]]
        decoded[row, words, 0] = heads
        decoded[row, words, 1] = rel_ids[row, words, heads]
    return torch.from_numpy(decoded)


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


# ---------------------------------------------------------------------------------------------
# Script plumbing: recipes and the default model
# ---------------------------------------------------------------------------------------------


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the script docstring's line breaks (its example commands)."""


def parse_with_recipe(dataclass_types, recipes: dict[str, dict], args=None, description=None):
    """HfArgumentParser whose defaults are those of `--recipe` (first key = the default);
    flags given on the command line win. `--help` shows the chosen recipe's defaults.

    As in transformers' examples, a single `.json` / `.yaml` argument is a file holding the
    arguments (its "recipe" key picks the recipe). `--save_strategy no` / `--eval_strategy no`
    switch the recipe's best-checkpoint loading off (with a logged note). Logging is set up as
    in the examples once TrainingArguments exist."""
    from transformers import HfArgumentParser

    args = sys.argv[1:] if args is None else list(args)
    names = list(recipes)
    parser = HfArgumentParser(
        dataclass_types, description=description, formatter_class=_HelpFormatter
    )
    if is_args_file(args):
        given = read_args_file(args[0])
        recipe = given.get("recipe", names[0])
        if recipe not in recipes:
            raise ValueError(f"recipe must be one of {names}, got {recipe!r} in {args[0]}")
        defaults = run_everything_unless_told(
            switch_off_best_model_loading(recipes[recipe], given), given
        )
        parsed = parser.parse_dict({**defaults, "recipe": recipe, **given})
    else:
        early = argparse.ArgumentParser(add_help=False)
        early.add_argument("--recipe", choices=names, default=names[0])
        early.add_argument("--save_strategy")
        early.add_argument("--eval_strategy")
        known = early.parse_known_args(args)[0]
        explicit = {
            key: value
            for key, value in vars(known).items()
            if key != "recipe" and value is not None
        }
        given_flags = {arg.split("=")[0].lstrip("-") for arg in args if arg.startswith("--")}
        defaults = run_everything_unless_told(
            switch_off_best_model_loading(recipes[known.recipe], explicit), given_flags
        )
        parser.set_defaults(recipe=known.recipe, **defaults)
        parsed = parser.parse_args_into_dataclasses(args=args)
    for value in parsed:
        if hasattr(value, "get_process_log_level"):
            setup_logging(value)
    return parsed


def is_args_file(args: list[str]) -> bool:
    """A single `.json` / `.yaml` / `.yml` argument: a file holding the arguments, as in
    transformers' examples."""
    return len(args) == 1 and args[0].endswith((".json", ".yaml", ".yml"))


def parse_args_or_file(parser, args=None, defaults: dict | None = None):
    """The dataclasses of an HfArgumentParser from command-line flags or from a single
    `.json` / `.yaml` args file (unknown keys are an error), with `defaults` under either;
    logging is then set up as in transformers' examples (for the scripts without recipes)."""
    args = sys.argv[1:] if args is None else list(args)
    defaults = defaults or {}
    if is_args_file(args):
        parsed = parser.parse_dict({**defaults, **read_args_file(args[0])})
    else:
        parser.set_defaults(**defaults)
        parsed = parser.parse_args_into_dataclasses(args=args)
    for value in parsed:
        if hasattr(value, "get_process_log_level"):
            setup_logging(value)
    return parsed


def read_args_file(path: str) -> dict:
    """The arguments of a `.json` or `.yaml` file, as a dict."""
    with open(path, encoding="utf-8") as handle:
        if path.endswith(".json"):
            values = json.load(handle)
        else:
            import yaml

            values = yaml.safe_load(handle)
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of argument names to values")
    return values


def run_everything_unless_told(recipe: dict, given) -> dict:
    """Without any of --do_train / --do_eval / --do_predict the scripts train, evaluate and
    predict (their no-argument run); with any of them, only what is asked, as in transformers'
    examples."""
    if any(name in given for name in ("do_train", "do_eval", "do_predict")):
        return recipe
    return {**recipe, "do_train": True, "do_eval": True, "do_predict": True}


def switch_off_best_model_loading(recipe: dict, given: dict) -> dict:
    """A recipe that loads the best checkpoint at the end needs saving and evaluation; when the
    user turns either off, turn best-model loading off too instead of failing."""
    turned_off = [
        name for name in ("save_strategy", "eval_strategy") if str(given.get(name)) == "no"
    ]
    if (
        not turned_off
        or not recipe.get("load_best_model_at_end")
        or "load_best_model_at_end" in given
    ):
        return recipe
    logger.warning(
        "--%s no: load_best_model_at_end is switched off (the final model is the last step's)",
        turned_off[0],
    )
    return {**recipe, "load_best_model_at_end": False}


def square_patch_count(num_patches: int) -> int:
    """Smallest square >= num_patches (the model's 2-D positions need a square grid)."""
    return math.ceil(math.sqrt(num_patches)) ** 2


def load_task_model(model_class, model_name_or_path: str | None, max_seq_length: int, **config):
    """Pretrained weights (local folder or Hub id) or, without a path, a randomly initialised
    `tiny` model whose strip holds `max_seq_length` patches (rounded up to a square grid).

    `config` (labels, dropout, pooling, parser variant) overrides the checkpoint's config; None
    values leave it as it is.
    """
    from ..configuration_pixel_m4 import PixelM4Config

    config = {name: value for name, value in config.items() if value is not None}

    if model_name_or_path:
        return model_class.from_pretrained(model_name_or_path, **config)
    patches = square_patch_count(max_seq_length)
    return model_class(PixelM4Config.from_preset("tiny", image_size=(16, 16 * patches), **config))


def load_renderer(model_name_or_path: str | None, max_seq_length: int, **kwargs):
    """The checkpoint's renderer (if it has one) or the default one, at `max_seq_length`."""
    if model_name_or_path and (
        not Path(model_name_or_path).is_dir()
        or (Path(model_name_or_path) / "preprocessor_config.json").is_file()
    ):
        return PixelM4TextRenderer.from_pretrained(
            model_name_or_path, max_seq_length=max_seq_length, **kwargs
        )
    return PixelM4TextRenderer(max_seq_length=max_seq_length, **kwargs)


def named_labels(dataset, column: str) -> list:
    """A label column as names: ints of a `ClassLabel` (Hub datasets such as wikiann, SIB-200
    variants) become their names, so local files and Hub data share one label vocabulary."""
    feature = dataset.features[column]
    inner = getattr(feature, "feature", feature)  # List(ClassLabel) for tag sequences
    values = dataset[column]
    if hasattr(inner, "int2str"):
        if inner is feature:
            return [inner.int2str(value) for value in values]
        return [[inner.int2str(value) for value in row] for row in values]
    return values


def check_splits(splits, required: Sequence[str], columns: Sequence[str]) -> None:
    """The splits the run needs exist and hold the named columns."""
    for split in required:
        if split not in splits:
            raise ValueError(f"the data has no {split!r} split (it has {sorted(splits)})")
        missing = [column for column in columns if column not in splits[split].column_names]
        if missing:
            raise ValueError(
                f"the {split} split has no column(s) {missing}; its columns are "
                f"{splits[split].column_names} (set the *_column flags)"
            )


@dataclass
class DropoutArguments:
    """Dropout of the fine-tuned model, as the published task scripts set it: their
    `--dropout_prob` (default 0.1, Table 7) sets hidden and attention dropout, and the heads
    (and the embeddings) drop out with hidden_dropout_prob."""

    hidden_dropout_prob: float = field(
        default=0.1,
        metadata={"help": "Dropout after the embeddings and in every encoder block (paper: 0.1)."},
    )
    attention_probs_dropout_prob: float = field(
        default=0.1, metadata={"help": "Dropout on the attention probabilities (paper: 0.1)."}
    )
    classifier_dropout: float | None = field(
        default=None,
        metadata={
            "help": "Dropout in the task head (default: --hidden_dropout_prob, as published)."
        },
    )

    def config(self) -> dict:
        return asdict(self)


PAPER_TRAINING = dict(
    # Table 7 of the PIXEL-M4 paper, shared by the three tasks
    learning_rate=5e-5,
    lr_scheduler_type="linear",
    warmup_steps=100,
    max_steps=15_000,
    weight_decay=0.0,
    adam_beta1=0.9,
    adam_beta2=0.999,
    adam_epsilon=1e-8,
    load_best_model_at_end=True,
    save_total_limit=2,
)


SAMPLE_TRAINING = dict(
    # Shared by the three scripts' quick CPU runs on the shipped samples (NOT the paper's setting)
    warmup_steps=10,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=32,
    eval_strategy="steps",
    logging_steps=10,
    load_best_model_at_end=True,
    save_total_limit=1,
    report_to="none",
)


def configure_evaluation(training_args, has_validation: bool) -> bool:
    """Without a validation split there is nothing to select checkpoints or stop early on:
    say so and train for the full number of steps. Returns whether evaluation runs."""
    if has_validation:
        return training_args.eval_strategy != "no"
    if training_args.eval_strategy != "no":
        logger.warning(
            "no validation split: training for max_steps without evaluation, early stopping or "
            "best-checkpoint selection; the test split is evaluated at the end"
        )
    training_args.eval_strategy = "no"
    training_args.load_best_model_at_end = False
    return False


@dataclass
class RunArguments:
    """Flags the run scripts share with transformers' examples."""

    max_train_samples: int | None = field(
        default=None,
        metadata={"help": "Use only the first N training examples (debugging, quick runs)."},
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N validation examples."}
    )
    max_predict_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N test examples."}
    )


SPLIT_LIMITS = {"train": "max_train_samples", "validation": "max_eval_samples",
                "test": "max_predict_samples"}  # fmt: skip


def card_info(args) -> dict:
    """What the model card says about a run: the base model, the dataset and the training
    truncation length (keywords of `Trainer.push_to_hub` / `create_model_card`)."""
    return {
        "finetuned_from": args.model_name_or_path,
        "dataset": args.dataset_name,
        "max_seq_length": args.max_seq_length,
    }


def select_samples(data: dict, run_args: RunArguments) -> dict:
    """The first `--max_*_samples` examples of each split (all of a split without a limit)."""
    selected = {}
    for split, dataset in data.items():
        limit = getattr(run_args, SPLIT_LIMITS.get(split, ""), None)
        if limit is not None and limit < 1:
            raise ValueError(f"--{SPLIT_LIMITS[split]} must be >= 1, got {limit}")
        selected[split] = (
            dataset if limit is None else dataset.select(range(min(limit, len(dataset))))
        )
    return selected


def setup_logging(training_args) -> None:
    """Logging as in transformers' examples: one format, the process's log level for this
    package, transformers and datasets, a line about the device setup."""
    import datasets
    import transformers

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    if training_args.should_log:
        transformers.utils.logging.set_verbosity_info()  # the default of should_log is INFO
    level = training_args.get_process_log_level()
    logging.getLogger("pixel_m4").setLevel(level)
    logging.getLogger("__main__").setLevel(level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    logger.warning(
        "Process rank: %s, device: %s, n_gpu: %s, distributed training: %s, bf16: %s, fp16: %s",
        training_args.process_index,
        training_args.device,
        training_args.n_gpu,
        training_args.parallel_mode.value == "distributed",
        training_args.bf16,
        training_args.fp16,
    )


def folder_renderer(renderer: PixelM4TextRenderer, num_patches: int) -> PixelM4TextRenderer:
    """The renderer saved with a fine-tuned model: the training renderer's settings, filling the
    model's whole strip, so that `model(**renderer(texts))` works on the saved folder (training
    may truncate earlier, `--max_seq_length`; the card records that length)."""
    if renderer.max_seq_length == num_patches:
        return renderer
    settings = {key: value for key, value in renderer.to_dict().items()}
    settings["max_seq_length"] = num_patches
    return PixelM4TextRenderer(**settings)


def make_trainer(model, training_args, renderer, **kwargs):
    """A `PixelM4Trainer`: the renderer (at the model's strip length) is its `processing_class`,
    so `save_model`, checkpoints and `push_to_hub` carry it, its fonts and the remote code, and
    the model card is ours, filled in from `card_info` (dataset, base model) and the metrics."""
    from transformers import Trainer

    class PixelM4Trainer(Trainer):
        def create_model_card(self, **card):
            if self.is_world_process_zero():
                card.setdefault("model_id", getattr(self, "hub_model_id", None))
                write_task_card(self, card)

    return PixelM4Trainer(
        model=model,
        args=training_args,
        processing_class=folder_renderer(renderer, model.config.num_patches),
        **kwargs,
    )


TASK_NAMES = {
    "PixelM4ForSequenceClassification": ("text-classification", "Text classification"),
    "PixelM4ForTokenClassification": ("token-classification", "Token classification (NER)"),
    "PixelM4ForBiaffineParsing": ("dependency-parsing", "Dependency parsing"),
}


def write_task_card(trainer, card: dict) -> None:
    """README.md of a fine-tuned folder: the package's card (usage, licences, install line) with
    the task, its labels, the results and the training settings."""
    from .hub import write_model_card

    model, args = trainer.model, trainer.args
    task, title = TASK_NAMES.get(type(model).__name__, ("feature-extraction", "Fine-tuned"))
    results_file = Path(args.output_dir) / "all_results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    metric_rows = "\n".join(
        f"| {name} | {value:.4g} |"
        for name, value in sorted(results.items())
        if name.startswith(("eval_", "test_"))
        and isinstance(value, (int, float))
        and not name.endswith(("_runtime", "_per_second", "truncated_examples", "truncated_words"))
    )
    labels = ", ".join(f"`{label}`" for label in model.config.id2label.values())
    datasets_used = card.get("dataset") or card.get("datasets")
    datasets_used = [datasets_used] if isinstance(datasets_used, str) else datasets_used
    base_model = card.get("finetuned_from") or card.get("base_model")
    usage_snippet = {
        "text-classification": 'print(pipe("Pixels, not tokens."))  # {"label": ..., "score": ...}',
        "token-classification": 'print(pipe("Maria lives in Oslo ."))  # per word: entity, score, start, end',
        "dependency-parsing": 'print(pipe("Maria lives in Oslo ."))  # per word: head, relation, score',
    }.get(task, "")
    section = "\n".join(
        [
            f"## {title}",
            "",
            "Fine-tuned with `examples/run_*.py` of the pixel-m4 package"
            + (f" from `{base_model}`" if base_model else " from a randomly initialised model")
            + (
                f" on {', '.join(f'`{name}`' for name in datasets_used)}." if datasets_used else "."
            ),
            f"Trained for {trainer.state.global_step} steps, learning rate "
            f"{args.learning_rate}, batch size {args.train_batch_size}; texts truncated to "
            f"{card.get('max_seq_length', 'the renderer')} patches in training (the saved renderer "
            f"fills the model's {model.config.num_patches} patches).",
            "",
            f"Labels ({model.config.num_labels}): {labels}",
            "",
            "| metric | value |\n|---|---|\n" + metric_rows if metric_rows else "",
            "",
            "```python",
            "from transformers import pipeline",
            "",
            f'pipe = pipeline("{task}", model="{card.get("model_id") or Path(args.output_dir).name}", '
            "trust_remote_code=True)",
            usage_snippet,
            "```",
        ]
    )
    metadata = {
        "pipeline_tag": task if task != "dependency-parsing" else "token-classification",
        "base_model": base_model,
        "datasets": datasets_used,
        "tags": ["pixel", "pixel-m4", "custom_code", task],
    }
    renderer = trainer.processing_class
    write_model_card(
        args.output_dir, model, renderer, model_id=card.get("model_id"), task_section=section,
        **metadata,
    )  # fmt: skip


def run_and_save(
    trainer, renderer, data: dict, skipped_rows: dict | None = None, card: dict | None = None
) -> dict:
    """Train / evaluate / predict as the TrainingArguments say (`--do_train`, `--do_eval`,
    `--do_predict`; `parse_with_recipe` turns all three on when none is given), as
    transformers' examples do: the best
    checkpoint is restored with load_best_model_at_end, model + renderer + remote code saved,
    train_results.json, eval_results.json, test_results.json, all_results.json and
    trainer_state.json written, truncation (and rows skipped as invalid, from `check_rows`)
    counted per split; `--push_to_hub` pushes the folder
    with a filled model card (otherwise the card is written locally)."""
    import time

    from transformers import EarlyStoppingCallback

    args = trainer.args
    do_train, do_eval, do_predict = args.do_train, args.do_eval, args.do_predict
    metrics = {}
    started = time.perf_counter()
    if do_train:
        train_metrics = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint).metrics
        train_metrics["train_samples"] = len(data["train"])
        trainer.save_model()  # model + processing_class (renderer, fonts, remote code)
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)
        trainer.save_state()
        metrics.update(train_metrics)
    if do_eval and "validation" in data:
        eval_metrics = trainer.evaluate(data["validation"])
        eval_metrics["eval_samples"] = len(data["validation"])
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    if do_predict and "test" in data:
        # early stopping watches validation scores only (it would warn about test metrics)
        trainer.remove_callback(EarlyStoppingCallback)
        test_metrics = trainer.evaluate(data["test"], metric_key_prefix="test")
        test_metrics["test_samples"] = len(data["test"])
        trainer.log_metrics("test", test_metrics)
        trainer.save_metrics("test", test_metrics)
        metrics.update(test_metrics)
    for split, dataset in data.items():
        for name, value in truncation_report(renderer, dataset).items():
            metrics[f"{split}_{name}"] = value
    for split, count in (skipped_rows or {}).items():
        metrics[f"{split}_skipped_invalid_rows"] = count
    metrics["total_runtime_seconds"] = round(time.perf_counter() - started, 1)
    trainer.log_metrics("all", metrics)
    trainer.save_metrics("all", metrics, combined=False)
    if args.push_to_hub:
        trainer.push_to_hub(**(card or {}))
    elif trainer.is_world_process_zero():
        trainer.create_model_card(**(card or {}))
    return metrics
