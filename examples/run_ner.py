r"""Fine-tune PIXEL-M4 for named entity recognition (BIO tags; seqeval entity-level P/R/F1).

    python examples/run_ner.py                      # shipped English sample, random tiny model
    python examples/run_ner.py --recipe paper --model_name_or_path <pretrained folder or Hub id> \
        --train_file train.conll --validation_file dev.conll --test_file test.conll
    python examples/run_ner.py --recipe paper --model_name_or_path <...> \
        --dataset_name wikiann --dataset_config_name hi --tags_column ner_tags

Each word is labelled from its first patch (--word_pooling mean: the mean of its patches).
Writes the model + renderer to --output_dir (load with
AutoModelForTokenClassification.from_pretrained(dir, trust_remote_code=True)) and all_results.json.
"""

from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset

from pixel_m4.modeling_pixel_m4 import PixelM4ForTokenClassification
from pixel_m4.tools.task_cli import (
    PAPER_TRAINING,
    SAMPLE_TRAINING,
    TaskArguments,
    load_labelled_model,
    load_task_splits,
    parse_task_arguments,
    select_samples,
    train_task_model,
)
from pixel_m4.tools.task_data import (
    WordTaskCollator,
    encode_labels,
    label_list,
    named_labels,
    ner_row_problem,
)
from pixel_m4.tools.task_metrics import ner_metrics

SAMPLE = Path(__file__).resolve().parent / "data" / "ner" / "en"
SAMPLE_FILES = dict(
    train_file=str(SAMPLE / "train.conll"),
    validation_file=str(SAMPLE / "validation.conll"),
    test_file=str(SAMPLE / "test.conll"),
)

RECIPES = {
    # A few minutes on 2 CPU cores with the shipped sample; NOT the paper's setting.
    "sample": dict(
        SAMPLE_TRAINING,
        **SAMPLE_FILES,
        max_seq_length=64,
        early_stopping_patience=5,
        output_dir="outputs/ner",
        learning_rate=5e-4,
        max_steps=120,
        eval_steps=40,
        save_steps=40,
        metric_for_best_model="f1",
    ),
    # Table 7: batch 64, 196 patches, eval every 500 steps, early stopping after 5 evaluations.
    "paper": dict(
        PAPER_TRAINING,
        **SAMPLE_FILES,
        max_seq_length=196,
        early_stopping_patience=5,
        output_dir="outputs/ner",
        per_device_train_batch_size=64,
        per_device_eval_batch_size=64,
        eval_strategy="steps",
        eval_steps=500,
        save_steps=500,
        logging_steps=50,
        metric_for_best_model="f1",
    ),
}


@dataclass
class NerArguments(TaskArguments):
    tokens_column: str = field(default="tokens", metadata={"help": "Column of token lists."})
    tags_column: str = field(
        default="tags", metadata={"help": "Column of BIO tag lists (names or ClassLabel ids)."}
    )
    word_pooling: str = field(
        default="first",
        metadata={
            "help": "Word vector: its 'first' patch (paper) or the 'mean' of its patches.",
            "choices": ["first", "mean"],
        },
    )


def main():
    args, run_args, dropout, training_args = parse_task_arguments(NerArguments, RECIPES, __doc__)
    splits, skipped = load_task_splits(
        args,
        [args.tokens_column, args.tags_column],
        lambda row: ner_row_problem(row, args.tokens_column, args.tags_column),
    )
    labels = label_list(named_labels(splits["train"], args.tags_column))
    label2id = {name: index for index, name in enumerate(labels)}

    def prepare(split):
        tags = encode_labels(named_labels(splits[split], args.tags_column), label2id, split)
        return Dataset.from_dict({"tokens": splits[split][args.tokens_column], "labels": tags})

    data = select_samples({split: prepare(split) for split in splits}, run_args)
    model = load_labelled_model(
        PixelM4ForTokenClassification, args, dropout, labels, word_pooling=args.word_pooling
    )
    train_task_model(
        args,
        training_args,
        model,
        data,
        skipped,
        WordTaskCollator,
        compute_metrics=ner_metrics(model.config.id2label),
    )


if __name__ == "__main__":
    main()
