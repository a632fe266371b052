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
from transformers import EarlyStoppingCallback, TrainingArguments, set_seed

from pixel_m4.modeling_pixel_m4 import PixelM4ForTokenClassification
from pixel_m4.tools.tasks import (
    PAPER_TRAINING,
    SAMPLE_TRAINING,
    DropoutArguments,
    RunArguments,
    WordTaskCollator,
    card_info,
    check_rows,
    check_splits,
    configure_evaluation,
    encode_labels,
    label_list,
    load_renderer,
    load_splits,
    load_task_model,
    make_trainer,
    named_labels,
    ner_metrics,
    ner_row_problem,
    parse_with_recipe,
    run_and_save,
    select_samples,
)

SAMPLE = Path(__file__).resolve().parent / "data" / "ner" / "en"

RECIPES = {
    # A few minutes on 2 CPU cores with the shipped sample; NOT the paper's setting.
    "sample": dict(
        SAMPLE_TRAINING,
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
class NerArguments:
    recipe: str = field(
        default="sample",
        metadata={
            "help": "Default hyperparameters: 'sample' (quick CPU run on the shipped sample: "
            "64 patches, lr 5e-4, 120 steps, batch 16) or 'paper' (Table 7: lr 5e-5, 100 warmup "
            "steps, linear decay, 15k steps, batch 64, 196 patches, eval every 500 steps, "
            "early stopping patience 5). Flags given explicitly override the recipe.",
            "choices": list(RECIPES),
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Pretrained PIXEL-M4 folder or Hub id (e.g. a run_pretraining.py output or a "
            "converted Team-PIXEL/pixel-m4). Default: a randomly initialised "
            "PixelM4Config.from_preset('tiny') sized to --max_seq_length patches (for trying "
            "the script; it cannot reach useful scores)."
        },
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Hub dataset (e.g. wikiann, universalner/universal_ner); overrides the files."
        },
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Configuration of --dataset_name, e.g. a language code."}
    )
    train_file: str = field(
        default=str(SAMPLE / "train.conll"),
        metadata={"help": "CoNLL (token TAB tag, blank line between sentences) or JSON file."},
    )
    validation_file: str | None = field(
        default=str(SAMPLE / "validation.conll"),
        metadata={"help": "Validation file (checkpoint selection); same format as train."},
    )
    test_file: str | None = field(
        default=str(SAMPLE / "test.conll"),
        metadata={"help": "Test file, evaluated with the best checkpoint."},
    )
    tokens_column: str = field(default="tokens", metadata={"help": "Column of token lists."})
    tags_column: str = field(
        default="tags", metadata={"help": "Column of BIO tag lists (names or ClassLabel ids)."}
    )
    max_seq_length: int = field(
        default=64,
        metadata={"help": "Patches per rendered sentence (paper: 196); longer ones are truncated."},
    )
    word_pooling: str = field(
        default="first",
        metadata={
            "help": "Word vector: its 'first' patch (paper) or the 'mean' of its patches.",
            "choices": ["first", "mean"],
        },
    )
    early_stopping_patience: int = field(
        default=5, metadata={"help": "Evaluations without improvement before stopping."}
    )
    skip_invalid_rows: bool = field(
        default=False,
        metadata={
            "help": "Leave out invalid rows (empty or invisible tokens, tags that are not BIO, nothing to render, ...) "
            "instead of stopping before training; their count per split goes to all_results.json."
        },
    )


def main():
    args, run_args, dropout, training_args = parse_with_recipe(
        (NerArguments, RunArguments, DropoutArguments, TrainingArguments),
        RECIPES,
        description=__doc__,
    )
    training_args.remove_unused_columns = False  # the collator renders the "tokens" column
    set_seed(training_args.seed)

    files = {"train": args.train_file, "validation": args.validation_file, "test": args.test_file}
    splits = load_splits(args.dataset_name, args.dataset_config_name, files)
    check_splits(splits, ["train"], [args.tokens_column, args.tags_column])
    splits, skipped = check_rows(
        splits,
        lambda row: ner_row_problem(row, args.tokens_column, args.tags_column),
        None if args.dataset_name else files,
        args.skip_invalid_rows,
    )
    labels = label_list(named_labels(splits["train"], args.tags_column))
    label2id = {name: index for index, name in enumerate(labels)}

    def prepare(split):
        tags = encode_labels(named_labels(splits[split], args.tags_column), label2id, split)
        return Dataset.from_dict({"tokens": splits[split][args.tokens_column], "labels": tags})

    data = select_samples({split: prepare(split) for split in splits}, run_args)
    model = load_task_model(
        PixelM4ForTokenClassification,
        args.model_name_or_path,
        args.max_seq_length,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label2id,
        word_pooling=args.word_pooling,
        **dropout.config(),
    )
    renderer = load_renderer(args.model_name_or_path, args.max_seq_length)
    evaluating = configure_evaluation(training_args, "validation" in data)
    trainer = make_trainer(
        model,
        training_args,
        renderer,
        train_dataset=data["train"],
        eval_dataset=data.get("validation") if evaluating else None,
        data_collator=WordTaskCollator(renderer, model.config.num_patches),
        compute_metrics=ner_metrics(model.config.id2label),
        callbacks=[EarlyStoppingCallback(args.early_stopping_patience)] if evaluating else [],
    )
    run_and_save(trainer, renderer, data, skipped, card_info(args))


if __name__ == "__main__":
    main()
