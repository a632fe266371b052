r"""Fine-tune PIXEL-M4 for dependency parsing with a biaffine head (UAS / LAS on CoNLL-U data).

    python examples/run_dependency_parsing.py       # shipped English sample, random tiny model
    python examples/run_dependency_parsing.py --recipe paper \
        --model_name_or_path <pretrained folder or Hub id> \
        --train_file en_ewt-ud-train.conllu --validation_file en_ewt-ud-dev.conllu \
        --test_file en_ewt-ud-test.conllu

As published (PIXELForBiaffineParsing): word vectors are the mean of each word's patches, ROOT
is the pooler output (dense + tanh of CLS), biaffine scores on the word vectors, greedy heads
(--parser_decoding mst: Chu-Liu-Edmonds trees with one root; --parser_variant dozat_manning:
MLPs before the biaffine products, CLS as ROOT, impossible heads masked). Words cut off by
truncation are still scored (--score_truncated_words false leaves them out). Relations are the
universal part of DEPREL (nmod:poss -> nmod), as the published data reader does
(--keep_relation_subtypes keeps them). Multiword-token lines and empty nodes are skipped.
Writes the model + renderer to --output_dir (load with
AutoModel.from_pretrained(dir, trust_remote_code=True)) and all_results.json.
"""

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from datasets import Dataset
from transformers import EarlyStoppingCallback, TrainingArguments, set_seed

from pixel_m4.modeling_pixel_m4 import PixelM4ForBiaffineParsing
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
    parse_with_recipe,
    parsing_metrics,
    parsing_row_problem,
    preprocess_parser_logits,
    run_and_save,
    select_samples,
)

SAMPLE = Path(__file__).resolve().parent / "data" / "ud"

RECIPES = {
    # A few minutes on 2 CPU cores with the shipped sample; NOT the paper's setting.
    "sample": dict(
        SAMPLE_TRAINING,
        max_seq_length=64,
        early_stopping_patience=5,
        output_dir="outputs/dependency_parsing",
        learning_rate=5e-4,
        max_steps=100,
        eval_steps=50,
        save_steps=50,
        metric_for_best_model="las",
    ),
    # Table 7: batch 64, 256 patches, eval every 500 steps, early stopping after 5 evaluations.
    "paper": dict(
        PAPER_TRAINING,
        max_seq_length=256,
        early_stopping_patience=5,
        output_dir="outputs/dependency_parsing",
        per_device_train_batch_size=64,
        per_device_eval_batch_size=64,
        eval_strategy="steps",
        eval_steps=500,
        save_steps=500,
        logging_steps=50,
        metric_for_best_model="las",
    ),
}


@dataclass
class ParsingArguments:
    recipe: str = field(
        default="sample",
        metadata={
            "help": "Default hyperparameters: 'sample' (quick CPU run on the shipped sample: "
            "64 patches, lr 5e-4, 100 steps, batch 16) or 'paper' (Table 7: lr 5e-5, 100 "
            "warmup steps, linear decay, 15k steps, batch 64, 256 patches, eval every 500 steps, "
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
            "help": "Hub dataset with token lists, head lists and relation lists (see the "
            "*_column flags); overrides the files."
        },
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Configuration of --dataset_name, e.g. en_ewt."}
    )
    train_file: str = field(
        default=str(SAMPLE / "en_sample-ud-train.conllu"),
        metadata={"help": "CoNLL-U (or JSON with the columns below) training file."},
    )
    validation_file: str | None = field(
        default=str(SAMPLE / "en_sample-ud-dev.conllu"),
        metadata={"help": "Validation file (checkpoint selection); same format as train."},
    )
    test_file: str | None = field(
        default=str(SAMPLE / "en_sample-ud-test.conllu"),
        metadata={"help": "Test file, evaluated with the best checkpoint."},
    )
    tokens_column: str = field(default="tokens", metadata={"help": "Column of word lists."})
    heads_column: str = field(
        default="heads",
        metadata={"help": "Column of head lists (0 = root, i = i-th word; ints or digit strings)."},
    )
    deprels_column: str = field(default="deprels", metadata={"help": "Column of relation lists."})
    max_seq_length: int = field(
        default=64,
        metadata={"help": "Patches per rendered sentence (paper: 256); longer ones are truncated."},
    )
    parser_variant: str | None = field(
        default=None,
        metadata={
            "help": "published: biaffine scores on the word vectors, ROOT = pooler output; "
            "dozat_manning: arc/relation MLPs (500/100) first, CLS as ROOT, impossible heads "
            "masked. Default: the model config's (published for a new model).",
            "choices": ["published", "dozat_manning"],
        },
    )
    parser_decoding: str | None = field(
        default=None,
        metadata={
            "help": "greedy: each word's best head (published); mst: best tree with one root. "
            "Default: the model config's (greedy for a new model).",
            "choices": ["greedy", "mst"],
        },
    )
    score_truncated_words: bool = field(
        default=True,
        metadata={
            "help": "Score words cut off by truncation (from a zero vector), as the published "
            "data reader does; false leaves them out of the loss and the metrics."
        },
    )
    keep_relation_subtypes: bool = field(
        default=False,
        metadata={
            "help": "Keep DEPREL subtypes (nmod:poss); default: the universal relation only "
            "(nmod), as the published reader."
        },
    )
    early_stopping_patience: int = field(
        default=5, metadata={"help": "Evaluations without improvement before stopping."}
    )
    skip_invalid_rows: bool = field(
        default=False,
        metadata={
            "help": "Leave out invalid rows (empty or invisible tokens, heads that are not a tree, nothing to render, ...) "
            "instead of stopping before training; their count per split goes to all_results.json."
        },
    )


def main():
    args, run_args, dropout, training_args = parse_with_recipe(
        (ParsingArguments, RunArguments, DropoutArguments, TrainingArguments),
        RECIPES,
        description=__doc__,
    )
    training_args.remove_unused_columns = False  # the collator renders the "tokens" column
    set_seed(training_args.seed)

    files = {"train": args.train_file, "validation": args.validation_file, "test": args.test_file}
    splits = load_splits(args.dataset_name, args.dataset_config_name, files)
    columns = [args.tokens_column, args.heads_column, args.deprels_column]
    check_splits(splits, ["train"], columns)
    splits, skipped = check_rows(
        splits,
        lambda row: parsing_row_problem(
            row, args.tokens_column, args.heads_column, args.deprels_column
        ),
        None if args.dataset_name else files,
        args.skip_invalid_rows,
    )

    def relation_names(split):
        rows = splits[split][args.deprels_column]
        if args.keep_relation_subtypes:
            return rows
        return [[str(name).split(":")[0] for name in row] for row in rows]

    relations = label_list(relation_names("train"))
    label2id = {name: index for index, name in enumerate(relations)}

    def prepare(split):
        part = splits[split]
        return Dataset.from_dict(
            {
                "tokens": part[args.tokens_column],
                "arc_labels": [[int(head) for head in heads] for heads in part[args.heads_column]],
                "rel_labels": encode_labels(relation_names(split), label2id, split),
            }
        )

    data = select_samples({split: prepare(split) for split in splits}, run_args)
    model = load_task_model(
        PixelM4ForBiaffineParsing,
        args.model_name_or_path,
        args.max_seq_length,
        num_labels=len(relations),
        id2label=dict(enumerate(relations)),
        label2id=label2id,
        parser_variant=args.parser_variant,
        parser_decoding=args.parser_decoding,
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
        data_collator=WordTaskCollator(
            renderer,
            model.config.num_patches,
            label_fields=("arc_labels", "rel_labels"),
            head_fields=("arc_labels",),
            score_truncated_words=args.score_truncated_words,
        ),
        compute_metrics=parsing_metrics,
        preprocess_logits_for_metrics=partial(
            preprocess_parser_logits, decoding=model.config.parser_decoding
        ),
        callbacks=[EarlyStoppingCallback(args.early_stopping_patience)] if evaluating else [],
    )
    run_and_save(trainer, renderer, data, skipped, card_info(args))


if __name__ == "__main__":
    main()
