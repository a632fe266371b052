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
from pixel_m4.tools import task_cli, task_data, task_metrics

SAMPLE = Path(__file__).resolve().parent / "data" / "ner" / "en"
# sample: a few minutes on 2 CPU cores with the shipped sample (NOT the paper's setting); paper:
# Table 7, batch 64, 196 patches, eval every 500 steps, early stopping after 5 evaluations.
RECIPES = task_cli.task_recipes(
    [SAMPLE / f"{split}.conll" for split in ("train", "validation", "test")],
    "outputs/ner",
    "f1",
    sample=dict(max_seq_length=64, early_stopping_patience=5, learning_rate=5e-4, max_steps=120,
                eval_steps=40, save_steps=40),
    paper=dict(max_seq_length=196, early_stopping_patience=5, per_device_train_batch_size=64,
               per_device_eval_batch_size=64, eval_strategy="steps", eval_steps=500, save_steps=500),
)  # fmt: skip


@dataclass
class NerArguments(task_cli.TaskArguments):
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
    args, run_args, dropout, training_args = task_cli.parse_task_arguments(
        NerArguments, RECIPES, __doc__
    )
    splits, skipped = task_cli.load_task_splits(
        args,
        [args.tokens_column, args.tags_column],
        lambda row: task_data.ner_row_problem(row, args.tokens_column, args.tags_column),
    )
    labels = task_data.label_list(task_data.named_labels(splits["train"], args.tags_column))
    label2id = {name: index for index, name in enumerate(labels)}

    def prepare(split):
        tags = task_data.encode_labels(
            task_data.named_labels(splits[split], args.tags_column), label2id, split
        )
        return Dataset.from_dict({"tokens": splits[split][args.tokens_column], "labels": tags})

    data = task_cli.select_samples({split: prepare(split) for split in splits}, run_args)
    model = task_cli.load_labelled_model(
        PixelM4ForTokenClassification, args, dropout, labels, word_pooling=args.word_pooling
    )
    metrics = task_metrics.ner_metrics(model.config.id2label)
    task_cli.train_task_model(
        args, training_args, model, data, skipped, task_data.WordTaskCollator, metrics
    )


if __name__ == "__main__":
    main()
