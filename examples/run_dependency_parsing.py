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

from pixel_m4.modeling_pixel_m4 import PixelM4ForBiaffineParsing
from pixel_m4.tools import task_cli, task_data, task_metrics

SAMPLE = Path(__file__).resolve().parent / "data" / "ud"
RECIPES = task_cli.task_recipes(
    [SAMPLE / f"en_sample-ud-{split}.conllu" for split in ("train", "dev", "test")],
    "outputs/dependency_parsing",
    "las",
    # Table 7: batch 64, 256 patches, eval every 500 steps, early stopping after 5 evaluations.
    paper=dict(max_seq_length=256, early_stopping_patience=5, per_device_train_batch_size=64,
               per_device_eval_batch_size=64, eval_strategy="steps", eval_steps=500, save_steps=500),
    # A few minutes on 2 CPU cores with the shipped sample; NOT the paper's setting.
    sample=dict(max_seq_length=64, early_stopping_patience=5, learning_rate=5e-4, max_steps=100,
                eval_steps=50, save_steps=50),
)  # fmt: skip


@dataclass
class ParsingArguments(task_cli.TaskArguments):
    tokens_column: str = field(default="tokens", metadata={"help": "Column of word lists."})
    heads_column: str = field(
        default="heads",
        metadata={"help": "Column of head lists (0 = root, i = i-th word; ints or digit strings)."},
    )
    deprels_column: str = field(default="deprels", metadata={"help": "Column of relation lists."})
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


def main():
    args, run_args, dropout, training_args = task_cli.parse_task_arguments(
        ParsingArguments, RECIPES, __doc__
    )
    splits, skipped = task_cli.load_task_splits(
        args,
        [args.tokens_column, args.heads_column, args.deprels_column],
        lambda row: task_data.parsing_row_problem(
            row, args.tokens_column, args.heads_column, args.deprels_column
        ),
    )

    def relation_names(split):
        rows = splits[split][args.deprels_column]
        if args.keep_relation_subtypes:
            return rows
        return [[str(name).split(":")[0] for name in row] for row in rows]

    relations = task_data.label_list(relation_names("train"))
    label2id = {name: index for index, name in enumerate(relations)}

    def prepare(split):
        part = splits[split]
        return Dataset.from_dict(
            {
                "tokens": part[args.tokens_column],
                "arc_labels": [[int(head) for head in heads] for heads in part[args.heads_column]],
                "rel_labels": task_data.encode_labels(relation_names(split), label2id, split),
            }
        )

    data = task_cli.select_samples({split: prepare(split) for split in splits}, run_args)
    model = task_cli.load_labelled_model(
        PixelM4ForBiaffineParsing,
        args,
        dropout,
        relations,
        parser_variant=args.parser_variant,
        parser_decoding=args.parser_decoding,
    )
    collator = partial(
        task_data.WordTaskCollator,
        label_fields=("arc_labels", "rel_labels"),
        head_fields=("arc_labels",),
        score_truncated_words=args.score_truncated_words,
    )
    decode = partial(task_metrics.preprocess_parser_logits, decoding=model.config.parser_decoding)
    task_cli.train_task_model(
        args, training_args, model, data, skipped, collator, task_metrics.parsing_metrics,
        preprocess_logits_for_metrics=decode,
    )  # fmt: skip


if __name__ == "__main__":
    main()
