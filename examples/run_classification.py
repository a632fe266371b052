r"""Fine-tune PIXEL-M4 for text classification (SIB-200 topics; accuracy and macro-F1).

    python examples/run_classification.py           # shipped English sample, random tiny model
    python examples/run_classification.py --recipe paper \
        --model_name_or_path <pretrained folder or Hub id> \
        --dataset_name Davlan/sib200 --dataset_config_name hin_Deva

As the published head: every patch through Linear + GELU + LayerNorm + dropout, then the mean
over the text (--pooling_mode max; cls: the pooler, dense + tanh of CLS); text pairs through
--text_pair_column. Writes the model + renderer to --output_dir (load with
AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)) and
all_results.json.
"""

from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from transformers import EarlyStoppingCallback, TrainingArguments, set_seed

from pixel_m4.modeling_pixel_m4 import PixelM4ForSequenceClassification
from pixel_m4.tools.tasks import (
    PAPER_TRAINING,
    SAMPLE_TRAINING,
    DropoutArguments,
    RunArguments,
    SequenceClassificationCollator,
    card_info,
    check_rows,
    check_splits,
    classification_metrics,
    classification_row_problem,
    configure_evaluation,
    encode_labels,
    label_list,
    load_renderer,
    load_splits,
    load_task_model,
    make_trainer,
    named_labels,
    parse_with_recipe,
    run_and_save,
    select_samples,
)

SAMPLE = Path(__file__).resolve().parent / "data" / "sib200" / "eng_Latn"

RECIPES = {
    # A few minutes on 2 CPU cores with the shipped sample; NOT the paper's setting.
    "sample": dict(
        SAMPLE_TRAINING,
        max_seq_length=80,
        early_stopping_patience=20,
        output_dir="outputs/classification",
        learning_rate=3e-4,
        max_steps=100,
        eval_steps=50,
        save_steps=50,
        metric_for_best_model="macro_f1",
    ),
    # Table 7: mean pooling, batch 32, 256 patches, eval every epoch, early stopping after
    # 20 epochs without improvement.
    "paper": dict(
        PAPER_TRAINING,
        max_seq_length=256,
        early_stopping_patience=20,
        output_dir="outputs/classification",
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_steps=50,
        metric_for_best_model="macro_f1",
    ),
}


@dataclass
class ClassificationArguments:
    recipe: str = field(
        default="sample",
        metadata={
            "help": "Default hyperparameters: 'sample' (quick CPU run on the shipped sample: "
            "80 patches, lr 3e-4, 100 steps, batch 16) or 'paper' (Table 7: lr 5e-5, 100 "
            "warmup steps, linear decay, 15k steps, batch 32, 256 patches, eval every epoch, "
            "early stopping patience 20 epochs). Flags given explicitly override the recipe.",
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
        metadata={"help": "Hub dataset (e.g. Davlan/sib200); overrides the files."},
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Configuration of --dataset_name, e.g. eng_Latn."}
    )
    train_file: str = field(
        default=str(SAMPLE / "train.tsv"), metadata={"help": "CSV, TSV or JSON training file."}
    )
    validation_file: str | None = field(
        default=str(SAMPLE / "validation.tsv"),
        metadata={"help": "Validation file (checkpoint selection); same format as train."},
    )
    test_file: str | None = field(
        default=str(SAMPLE / "test.tsv"),
        metadata={"help": "Test file, evaluated with the best checkpoint."},
    )
    text_column: str = field(default="text", metadata={"help": "Column of the texts."})
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Column of second texts for pair tasks (NLI, ...)."}
    )
    label_column: str = field(
        default="category", metadata={"help": "Column of the labels (names or ClassLabel ids)."}
    )
    max_seq_length: int = field(
        default=80,
        metadata={"help": "Patches per rendered text (paper: 256); longer texts are truncated."},
    )
    pooling_mode: str = field(
        default="mean",
        metadata={
            "help": "'mean' (paper) or 'max' over the projected patches, or 'cls' (the ViT "
            "pooler on the CLS vector).",
            "choices": ["mean", "cls", "max"],
        },
    )
    early_stopping_patience: int = field(
        default=20, metadata={"help": "Evaluations without improvement before stopping."}
    )
    skip_invalid_rows: bool = field(
        default=False,
        metadata={
            "help": "Leave out invalid rows (missing text or label, nothing to render, ...) "
            "instead of stopping before training; their count per split goes to all_results.json."
        },
    )


def main():
    args, run_args, dropout, training_args = parse_with_recipe(
        (ClassificationArguments, RunArguments, DropoutArguments, TrainingArguments),
        RECIPES,
        description=__doc__,
    )
    training_args.remove_unused_columns = False  # the collator renders the "text" column
    set_seed(training_args.seed)

    files = {"train": args.train_file, "validation": args.validation_file, "test": args.test_file}
    splits = load_splits(args.dataset_name, args.dataset_config_name, files)
    files = None if args.dataset_name else files
    columns = [args.text_column, args.label_column]
    columns += [args.text_pair_column] if args.text_pair_column else []
    check_splits(splits, ["train"], columns)
    splits, skipped = check_rows(
        splits,
        lambda row: classification_row_problem(
            row, args.text_column, args.label_column, args.text_pair_column
        ),
        files,
        args.skip_invalid_rows,
    )
    labels = label_list(named_labels(splits["train"], args.label_column), minimum=2)
    label2id = {name: index for index, name in enumerate(labels)}

    def prepare(split):
        part = splits[split]
        columns = {
            "text": part[args.text_column],
            "labels": encode_labels(named_labels(part, args.label_column), label2id, split),
        }
        if args.text_pair_column:
            columns["text_pair"] = part[args.text_pair_column]
        return Dataset.from_dict(columns)

    data = select_samples({split: prepare(split) for split in splits}, run_args)
    model = load_task_model(
        PixelM4ForSequenceClassification,
        args.model_name_or_path,
        args.max_seq_length,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label2id,
        pooling_mode=args.pooling_mode,
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
        data_collator=SequenceClassificationCollator(renderer, model.config.num_patches),
        compute_metrics=classification_metrics,
        callbacks=[EarlyStoppingCallback(args.early_stopping_patience)] if evaluating else [],
    )
    run_and_save(trainer, renderer, data, skipped, card_info(args))


if __name__ == "__main__":
    main()
