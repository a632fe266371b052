"""Task data for fine-tuning PIXEL-M4: classification, NER and dependency parsing.

* readers for CoNLL (token TAB tag) and CoNLL-U files (multiword-token ranges and empty nodes
  skipped), and loading of local files or Hub datasets into a `DatasetDict`;
* row checks: every row of every split is checked before training starts;
* label vocabularies with errors for labels a split does not know;
* collators that render text on the fly and, for word-level tasks, turn the renderer's
  word -> patch spans into `word_spans` [B, W, 2] tensors aligned with the word labels (the
  processing itself is the shipped `processing_pixel_m4`, which the pipelines use too);
* `truncation_report`: words lost to truncation per split.

Truncation: a text longer than the renderer's `max_seq_length` loses whole words from its end.
Those words get no patches; their labels become -100, so they are left out of the loss and of
the metrics (as when a tokenizer truncates). `truncation_report` counts them per split.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..processing_pixel_m4 import (
    align_word_labels,
    check_lengths,
    render_batch,
)
from ..rendering_pixel_m4 import PixelM4TextRenderer, clean_words

logger = logging.getLogger(__name__)

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


# ---------------------------------------------------------------------------------------------
# Collators: render on the fly (processing_pixel_m4 does the work)
# ---------------------------------------------------------------------------------------------


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

    Words without patches (truncated) get -100 labels; `head_fields` (head indices) and
    `score_truncated_words` as in `processing_pixel_m4.align_word_labels`.
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
        batch["word_spans"], labels = align_word_labels(
            features,
            rendered["word_patch_spans"],
            self.label_fields,
            self.head_fields,
            self.score_truncated_words,
        )
        batch.update(labels)
        return batch


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
