"""What the example scripts share: argument parsing (recipes, args files), logging, the task
arguments, the renderer and model loading, the Trainer, saving and the model card.

`--recipe` handling: `sample` for the shipped data on a CPU, `paper` for Table 7.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..rendering_pixel_m4 import PixelM4TextRenderer
from .task_data import check_rows, check_splits, load_splits, truncation_report

logger = logging.getLogger(__name__)

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
    # Not HfArgumentParser.parse_json_file / parse_yaml_file: the recipe a file names and the
    # script's defaults go in before its values (parse_dict), and a non-mapping needs a clear error.
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


def load_renderer(
    name_or_path: str | None,
    max_seq_length: int,
    patch_size: int | None = None,
    saved_length_must_match: bool = False,
    **settings,
) -> PixelM4TextRenderer:
    """The renderer saved with a model (a local folder or Hub id), or a new one made from
    `settings` (render_mode, font_file, ...) at `max_seq_length` patches.

    Fine-tuning (the default): a saved renderer is read at `max_seq_length` (training may
    truncate earlier than the model's strip); a local folder without one (weights only) gets the
    default renderer. `saved_length_must_match` (pretraining, whose strips are the model's whole
    input): the saved renderer must exist and make strips of exactly `max_seq_length` patches.
    `patch_size`, if given, must be the renderer's patch size."""
    has_renderer = name_or_path and (
        saved_length_must_match
        or not Path(name_or_path).is_dir()
        or (Path(name_or_path) / "preprocessor_config.json").is_file()
    )
    if not has_renderer:
        renderer = PixelM4TextRenderer(max_seq_length=max_seq_length, **settings)
    elif saved_length_must_match:
        renderer = PixelM4TextRenderer.from_pretrained(name_or_path)
    else:
        renderer = PixelM4TextRenderer.from_pretrained(name_or_path, max_seq_length=max_seq_length)
    if renderer.max_seq_length != max_seq_length:
        raise ValueError(
            f"the renderer makes strips of {renderer.max_seq_length} patches but the model reads "
            f"{max_seq_length}; use a renderer with max_seq_length={max_seq_length}"
        )
    if patch_size is not None and renderer.pixels_per_patch != patch_size:
        raise ValueError(
            f"render_mode {renderer.render_mode!r} makes {renderer.pixels_per_patch}-px patches "
            f"but the model's patch_size is {patch_size}: use a model config with patch_size="
            f"{renderer.pixels_per_patch} and image_size=[{renderer.pixels_per_patch}, "
            f"{renderer.pixels_per_patch * max_seq_length}], or another render mode"
        )
    return renderer


@dataclass
class TaskArguments:
    """Flags the three task scripts share. Each script's dataclass extends it with its columns and
    head options; its `RECIPES` hold the defaults that differ (sample files, lengths, patience)."""

    recipe: str = field(
        default="sample",
        metadata={
            "help": "Default hyperparameters: 'sample' (a quick CPU run on the shipped sample, "
            "NOT the paper's setting) or 'paper' (Table 7: lr 5e-5, 100 warmup steps, linear "
            "decay, 15k steps, the paper's batch size, length, evaluation interval and early "
            "stopping patience). The defaults --help shows are the chosen recipe's (e.g. "
            "--recipe paper --help). Flags given explicitly override the recipe.",
            "choices": ["sample", "paper"],
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
            "help": "Hub dataset holding the columns the *_column flags name (examples in the "
            "description above); overrides the files."
        },
    )
    dataset_config_name: str | None = field(
        default=None,
        metadata={"help": "Configuration of --dataset_name, e.g. a language code."},
    )
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "Training file: CoNLL (.conll/.txt, token TAB tag, blank line between "
            "sentences), CoNLL-U (.conllu), CSV, TSV or JSON (.json/.jsonl) with the columns "
            "the *_column flags name."
        },
    )
    validation_file: str | None = field(
        default=None,
        metadata={"help": "Validation file (checkpoint selection); same format as train."},
    )
    test_file: str | None = field(
        default=None, metadata={"help": "Test file, evaluated with the best checkpoint."}
    )
    max_seq_length: int | None = field(
        default=None,
        metadata={
            "help": "Patches per rendered text (--recipe paper: the paper's length); longer "
            "texts are truncated."
        },
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Evaluations without improvement before stopping."}
    )
    skip_invalid_rows: bool = field(
        default=False,
        metadata={
            "help": "Leave out invalid rows (missing text or labels, empty or invisible tokens, "
            "labels that do not fit, nothing to render, ...) instead of stopping before "
            "training; their count per split goes to all_results.json."
        },
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
    logging_steps=50,  # ours
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


def task_recipes(
    sample_files: Sequence[Path], output_dir: str, metric: str, sample: dict, paper: dict
) -> dict[str, dict]:
    """A script's `--recipe` defaults: "sample" (the first, the default) = SAMPLE_TRAINING +
    `sample`, "paper" = PAPER_TRAINING + `paper`; both default to the shipped (train,
    validation, test) `sample_files`, `output_dir` and `metric` for the best checkpoint."""
    files = dict(
        zip(("train_file", "validation_file", "test_file"), map(str, sample_files), strict=True)
    )
    both = dict(files, output_dir=output_dir, metric_for_best_model=metric)
    return {
        "sample": {**SAMPLE_TRAINING, **both, **sample},
        "paper": {**PAPER_TRAINING, **both, **paper},
    }


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
        "dependency-parsing": 'print(pipe("Maria lives in Oslo ."))  # per word: head, relation, score\n'
        "# well-formed trees: decode_trees of this folder's parsing_pixel_m4.py (its docstring)",
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


def parse_task_arguments(arguments_class, recipes: dict[str, dict], description: str, args=None):
    """(task arguments, RunArguments, DropoutArguments, TrainingArguments) of a task script
    (`parse_with_recipe`); the collators render the text columns, so the Trainer keeps them."""
    from transformers import TrainingArguments, set_seed

    parsed = parse_with_recipe(
        (arguments_class, RunArguments, DropoutArguments, TrainingArguments),
        recipes,
        args,
        description=description,
    )
    training_args = parsed[-1]
    training_args.remove_unused_columns = False
    set_seed(training_args.seed)  # before the model: its initialisation is part of the run
    return parsed


def load_task_splits(args: TaskArguments, columns: Sequence[str], row_problem) -> tuple:
    """The run's splits (Hub dataset or files) with the `columns`, every row checked with
    `row_problem(row) -> str | None`: (splits, {split: rows skipped as invalid})."""
    files = {"train": args.train_file, "validation": args.validation_file, "test": args.test_file}
    splits = load_splits(args.dataset_name, args.dataset_config_name, files)
    check_splits(splits, ["train"], columns)
    files = None if args.dataset_name else files
    return check_rows(splits, row_problem, files, args.skip_invalid_rows)


def load_labelled_model(model_class, args: TaskArguments, dropout, labels: list[str], **config):
    """`load_task_model` with the label vocabulary, the head options in `config` and dropout."""
    return load_task_model(
        model_class,
        args.model_name_or_path,
        args.max_seq_length,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: index for index, name in enumerate(labels)},
        **config,
        **dropout.config(),
    )


def train_task_model(
    args, training_args, model, data: dict, skipped: dict, collator, compute_metrics, **kwargs
):
    """The rest of a task script: the renderer, a Trainer with `collator(renderer, num_patches)`
    and `compute_metrics`, early stopping when there is a validation split, then `run_and_save`.
    `kwargs`: other Trainer arguments of the task."""
    from transformers import EarlyStoppingCallback

    renderer = load_renderer(args.model_name_or_path, args.max_seq_length)
    evaluating = configure_evaluation(training_args, "validation" in data)
    trainer = make_trainer(
        model,
        training_args,
        renderer,
        train_dataset=data["train"],
        eval_dataset=data.get("validation") if evaluating else None,
        data_collator=collator(renderer, model.config.num_patches),
        compute_metrics=compute_metrics,
        callbacks=[EarlyStoppingCallback(args.early_stopping_patience)] if evaluating else [],
        **kwargs,
    )
    run_and_save(trainer, renderer, data, skipped, card_info(args))
