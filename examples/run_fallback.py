"""Train a pixel fallback for a causal LM on XX->EN translation (Lotz et al. 2025), two stages.

The paper's setting by default: the whole source goes through the fallback (one pixel word per
word, Thai split into words with PyThaiNLP), source and target cut at 256 (Table 10).
Stage 1 trains the fallback encoder (+ projector) with the LLM frozen; stage 2 trains it jointly
with a DoRA adapter on the LLM's q/k/v/o projections. Both use the paper's schedule: peak LR
3e-4, 10% linear warm-up, cosine decay to 3e-5. Translations of a held-out split are scored
with chrF++ and BLEU (sacrebleu) before training and after.

With no arguments it runs on CPU in minutes: a tiny Llama built locally (tiny_causal_lm.py:
English-only BPE tokenizer, random init, briefly trained on the English sample corpus) and
the shipped HI/RU/UK/TH/ZH->EN sample (examples/data/parallel, CC0). That shows the plumbing,
not translation quality. A real run:

    python examples/run_fallback.py --llm_name_or_path HuggingFaceTB/SmolLM2-360M-Instruct \\
        --fallback_preset default --train_file opus_hi_en.jsonl --validation_file flores_hi.jsonl \\
        --stage1_steps 20000 --stage2_steps 20000 --per_device_train_batch_size 32 \\
        --gradient_accumulation_steps 8 --bf16 --output_dir smollm2-360m-pixel-fallback
"""

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import concatenate_datasets, load_dataset
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)

from pixel_m4.configuration_pixel_fallback import FALLBACK_PRESETS, PixelFallbackConfig
from pixel_m4.modeling_pixel_fallback import PixelFallbackForCausalLM, generate_text
from pixel_m4.processing_pixel_fallback import (
    MAX_SOURCE_LENGTH,
    MAX_TARGET_LENGTH,
    PIXEL_WORD_RULES,
    WORD_SEGMENTERS,
    PixelFallbackProcessor,
)
from pixel_m4.tools.hub import write_model_card
from pixel_m4.tools.task_cli import parse_args_or_file
from pixel_m4.tools.task_data import check_rows
from pixel_m4.tools.task_metrics import load_metric

from tiny_causal_lm import DATA_DIR, tiny_causal_lm_path

logger = logging.getLogger(__name__)

LANGUAGE_NAMES = {
    "hi": "Hindi", "ru": "Russian", "uk": "Ukrainian", "th": "Thai", "zh": "Chinese",
    "es": "Spanish", "ar": "Arabic", "ja": "Japanese", "ko": "Korean", "en": "English",
}  # fmt: skip


@dataclass
class FallbackArguments:
    llm_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Causal LM to extend (Hub id or folder, e.g. HuggingFaceTB/SmolLM2-360M-"
            "Instruct). Default: a tiny random-init English LLM built locally, for a CPU demo."
        },
    )
    tiny_llm_pretrain_steps: int = field(
        default=300,
        metadata={
            "help": "Without --llm_name_or_path: steps the tiny LLM is first trained on the "
            "English sample corpus (cached), making it English-centric like the paper's LLMs."
        },
    )
    fallback_preset: str | None = field(
        default=None,
        metadata={
            "help": f"Fallback encoder size, one of {sorted(FALLBACK_PRESETS)} ('default' = the "
            "paper's 4x1536, 'small' = 4x768). Default: 'test' with the tiny LLM, else 'default'."
        },
    )
    pixel_word_rule: str = field(
        default="all",
        metadata={
            "help": f"Which source words go to pixels: one of {PIXEL_WORD_RULES}. 'all' encodes "
            "the whole source with the fallback (the paper's main setting); 'non_ascii' keeps "
            "ASCII words as tokens (the paper's mixed-modality variant, §4)."
        },
    )
    word_segmenter: str = field(
        default="thai",
        metadata={
            "help": "Dictionary word segmenters for scripts without spaces, comma-separated: "
            f"{sorted(WORD_SEGMENTERS)} (thai needs pythainlp, chinese jieba, japanese janome), "
            "or 'none'. Default: thai, as the paper."
        },
    )
    max_source_length: int = field(
        default=MAX_SOURCE_LENGTH,
        metadata={
            "help": "Most LLM positions of the source (pixel words + tokens); later words are "
            "dropped. 0: no limit. Paper: 256."
        },
    )
    max_target_length: int = field(
        default=MAX_TARGET_LENGTH,
        metadata={
            "help": "Most target tokens in training (EOS included). 0: no limit. Paper: 256."
        },
    )
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "JSON lines / CSV / TSV with columns src, tgt (and optionally src_lang). "
            "Default: the shipped sample; its last --eval_per_language pairs per language are "
            "held out for evaluation."
        },
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Held-out pairs in the format of --train_file."}
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "A `datasets` Hub dataset with src/tgt columns instead of files."},
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Configuration of --dataset_name."}
    )
    languages: str = field(
        default="hi,ru,uk,th,zh",
        metadata={"help": "Comma-separated source languages to keep (by src_lang, or file name)."},
    )
    source_language: str | None = field(
        default=None,
        metadata={"help": "Source language code for data without a src_lang column (e.g. hi)."},
    )
    eval_per_language: int = field(
        default=20,
        metadata={"help": "Shipped sample only: pairs per language held out for evaluation."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Truncate the training set (for quick runs)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Truncate the evaluation set (for quick runs)."}
    )
    stage1_steps: int = field(
        default=300,
        metadata={"help": "Optimizer steps of stage 1 (LLM frozen, fallback trained); 0 skips."},
    )
    stage2_steps: int = field(
        default=300,
        metadata={"help": "Optimizer steps of stage 2 (DoRA on the LLM + fallback); 0 skips."},
    )
    lora_r: int = field(default=32, metadata={"help": "DoRA rank (paper: 32)."})
    lora_alpha: int = field(default=64, metadata={"help": "DoRA alpha (paper: 64)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "DoRA dropout (paper: 0.05)."})
    lora_target_modules: str = field(
        default="q_proj,k_proj,v_proj,o_proj",
        metadata={"help": "Comma-separated LLM modules that get DoRA (paper: Q, K, V, O)."},
    )
    use_chat_template: bool = field(
        default=True,
        metadata={
            "help": "Wrap the instruction in the tokenizer's chat template when it has one (the "
            "paper follows each model's chat template); plain 'Translate from X to English' else."
        },
    )
    max_new_tokens: int = field(
        default=64, metadata={"help": "Tokens to generate per translation in evaluation."}
    )
    num_beams: int = field(default=2, metadata={"help": "Beam size for evaluation (paper: 2)."})
    eval_batch_size: int = field(default=16, metadata={"help": "Batch size for generation."})
    skip_invalid_rows: bool = field(
        default=False,
        metadata={
            "help": "Leave out pairs with a missing or empty src/tgt instead of stopping before "
            "training; their count per split goes to eval_results.json."
        },
    )


# The paper's training settings (Table 10) as defaults; every one can be overridden.
PAPER_TRAINING_DEFAULTS = dict(
    output_dir="outputs/fallback",
    learning_rate=3e-4,
    warmup_steps=0.1,  # a ratio: 10% of the steps
    lr_scheduler_type="cosine_with_min_lr",
    lr_scheduler_kwargs='{"min_lr": 3e-5}',
    weight_decay=0.0,
    per_device_train_batch_size=16,
    logging_steps=20,
    save_strategy="no",
    report_to="none",
)


def check_arguments(args: FallbackArguments, training_args: TrainingArguments) -> None:
    """Numbers that would only fail late (mid-training, in evaluation) are checked first."""
    if training_args.max_steps > 0:
        raise ValueError("--max_steps is not used: set --stage1_steps and --stage2_steps")
    if training_args.push_to_hub:
        # each stage's Trainer would push a folder without the processor, fonts or card
        raise ValueError(
            "--push_to_hub is not supported by run_fallback.py: upload the finished output "
            "folder with `hf upload <repo_id> <output_dir>` (see docs/fallback.md)"
        )
    for name in ("stage1_steps", "stage2_steps"):
        if getattr(args, name) < 0:
            raise ValueError(
                f"--{name} must be >= 0 (0 skips the stage), got {getattr(args, name)}"
            )
    for name in ("num_beams", "eval_batch_size", "max_new_tokens", "lora_r", "eval_per_language"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("max_train_samples", "max_eval_samples"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1 when given, got {getattr(args, name)}")
    if not 0 <= args.lora_dropout < 1:
        raise ValueError(f"--lora_dropout must be in [0, 1), got {args.lora_dropout}")


def pair_problem(row: dict) -> str | None:
    for column in ("src", "tgt"):
        value = row.get(column)
        if not isinstance(value, str) or not value.strip():
            return f"{column} is {'missing' if value is None else 'empty'}"
    return None


def read_pair_file(path: str):
    """One JSON lines / CSV / TSV file of pairs; errors name the file."""
    extension = Path(path).suffix.lstrip(".")
    builder = {"jsonl": "json", "tsv": "csv"}.get(extension, extension)
    options = {"delimiter": "\t"} if extension == "tsv" else {}
    if not Path(path).is_file():
        raise FileNotFoundError(f"data file {path!r} does not exist")
    try:
        pairs = load_dataset(builder, data_files=path, split="train", **options)
    except Exception as error:
        cause = error.__cause__ or error
        raise ValueError(
            f"data file {path!r} cannot be read as {builder}: {type(cause).__name__}: {cause}"
        ) from error
    if not len(pairs):
        raise ValueError(f"data file {path!r} holds no pairs")
    return pairs


def load_pairs(args: FallbackArguments):
    """(train, eval, {split: invalid rows skipped}) with columns src, tgt, src_lang; every row
    is checked before training (a missing or empty src/tgt)."""
    languages = args.languages.split(",")
    if args.dataset_name:
        raw = load_dataset(args.dataset_name, args.dataset_config_name)
        train, evaluation = raw["train"], raw.get("validation", raw.get("test"))
    elif args.train_file:
        train = read_pair_file(args.train_file)
        evaluation = read_pair_file(args.validation_file) if args.validation_file else None
    else:  # the shipped sample: hold out the last pairs of every language
        files = [str(DATA_DIR / "parallel" / f"{code}-en.jsonl") for code in languages]
        parts = [load_dataset("json", data_files=path, split="train") for path in files]
        cut = [len(part) - args.eval_per_language for part in parts]
        train = concatenate_datasets([p.select(range(c)) for p, c in zip(parts, cut, strict=True)])
        evaluation = concatenate_datasets(
            [p.select(range(c, len(p))) for p, c in zip(parts, cut, strict=True)]
        )
    if evaluation is None:
        raise ValueError("no evaluation split: pass --validation_file (or a dataset with one)")
    for name, split in (("train", train), ("evaluation", evaluation)):
        missing = {"src", "tgt"} - set(split.column_names)
        if missing:
            raise ValueError(f"{name} data lacks the columns {sorted(missing)}")
    files = {"train": args.train_file, "evaluation": args.validation_file}
    checked, skipped = check_rows(
        {"train": train, "evaluation": evaluation},
        pair_problem,
        files if args.train_file else None,
        args.skip_invalid_rows,
    )
    train, evaluation = checked["train"], checked["evaluation"]
    if "src_lang" not in train.column_names:
        if not args.source_language:
            raise ValueError("the data has no src_lang column: pass --source_language")
        train = train.add_column("src_lang", [args.source_language] * len(train))
        evaluation = evaluation.add_column("src_lang", [args.source_language] * len(evaluation))
    else:
        present = sorted(set(train["src_lang"]))
        train = train.filter(lambda row: row["src_lang"] in languages)
        evaluation = evaluation.filter(lambda row: row["src_lang"] in languages)
        for name, split in (("training", train), ("evaluation", evaluation)):
            if not len(split):
                raise ValueError(
                    f"no {name} pairs are left for --languages {args.languages}: the data's "
                    f"src_lang values are {present[:20]}"
                )
    if args.max_train_samples:
        train = train.shuffle(seed=0).select(range(min(args.max_train_samples, len(train))))
    if args.max_eval_samples:
        evaluation = evaluation.shuffle(seed=0).select(
            range(min(args.max_eval_samples, len(evaluation)))
        )
    return train, evaluation, skipped


def prompt_template(tokenizer, language: str, use_chat_template: bool) -> str:
    """The instruction around the source text; '{text}' marks where the source goes."""
    instruction = f"Translate from {LANGUAGE_NAMES.get(language, language)} to English:\n{{text}}"
    if use_chat_template and tokenizer.chat_template:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True
        )
    return instruction + "\nEnglish:"


def evaluate(model, processor, pairs, args: FallbackArguments, name: str) -> dict[str, float]:
    """chrF++ (word_order=2) and BLEU of greedy/beam translations of `pairs`."""
    model.eval()
    hypotheses = generate_text(
        model,
        processor,
        pairs["src"],
        pairs["template"],
        batch_size=args.eval_batch_size,
        max_new_tokens=args.max_new_tokens,
        num_beams=args.num_beams,
        do_sample=False,
    )
    # chrF++ and BLEU through the package's `translation_scores` evaluate module (sacrebleu)
    computed = load_metric("translation_scores").compute(
        predictions=hypotheses, references=list(pairs["tgt"])
    )
    scores = {f"{name}_{metric}": value for metric, value in computed.items()}
    logger.info("%s: %s | e.g. %r -> %r", name, scores, pairs["src"][0], hypotheses[0])
    return scores


def train_stage(model, training_args, steps: int, train, collate) -> None:
    if steps <= 0:
        return
    stage_args = dataclasses.replace(training_args, max_steps=steps)
    Trainer(model=model, args=stage_args, train_dataset=train, data_collator=collate).train()


def write_fallback_card(
    output: Path, model, processor, train, evaluation, results: dict, args
) -> Path:
    """README.md of the saved folder: the package's fallback card (install line, usage, licences
    incl. OFL-1.1 for the fonts) with the base LLM, languages, datasets and the run's scores."""
    languages = sorted(set(train["src_lang"]) | set(evaluation["src_lang"]))
    names = ", ".join(LANGUAGE_NAMES.get(code, code) for code in languages)
    packages = ["torch", '"transformers>=5.17"', "cffi"]
    if hasattr(model.language_model, "peft_config"):  # a stage-2 DoRA adapter is saved
        packages.append("peft")
    if "thai" in processor.word_segmenter.split(",") and "th" in languages:
        packages.append("pythainlp")  # imported when Thai text appears
    score_rows = "\n".join(
        f"| {name} | {results[f'{name}_chrf++']:.2f} | {results[f'{name}_bleu']:.2f} |"
        for name in ("before", "after_stage1", "after")
    )
    base_model = model.config.base_model_name_or_path
    section = "\n".join(
        [
            f"## Translation {'/'.join(code.upper() for code in languages)} -> EN",
            "",
            f"Trained with `examples/run_fallback.py` of the pixel-m4 package on `{base_model}`"
            + (f" with `{args.dataset_name}`" if args.dataset_name else "")
            + f": stage 1 (LLM frozen) {args.stage1_steps} steps, stage 2 (DoRA r={args.lora_r} "
            f"on {args.lora_target_modules}) {args.stage2_steps} steps. Source languages: "
            f"{names}. Scores on {len(evaluation)} held-out pairs (sacrebleu, beam "
            f"{args.num_beams}):",
            "",
            "| model | chrF++ | BLEU |\n|---|---|---|\n" + score_rows,
        ]
    )
    example = evaluation[0]
    return write_model_card(
        output,
        renderer=processor.renderer,
        task_section=section,
        template="model_card_fallback.md",
        fields={
            "model_summary": f"A pixel fallback for `{base_model}`: translation from {names} "
            "into English (text generation).",
            "base_model": base_model,
            "install_packages": " ".join(packages),
            "example_source": json.dumps(example["src"], ensure_ascii=False),
            "example_template": json.dumps(example["template"], ensure_ascii=False),
        },
        base_model=base_model,
        datasets=[args.dataset_name] if args.dataset_name else None,
        language=sorted({*languages, "en"}),
        tags=["pixel", "pixel-fallback", "translation", "custom_code"]
        + [f"translation-{code}-en" for code in languages],
    )


def parse_arguments(args=None):
    """Flags, or a single .json / .yaml args file as in transformers' examples, over the
    paper's training defaults."""
    parser = HfArgumentParser((FallbackArguments, TrainingArguments))
    return parse_args_or_file(parser, args, defaults=PAPER_TRAINING_DEFAULTS)


def main():
    args, training_args = parse_arguments()
    check_arguments(args, training_args)
    set_seed(training_args.seed)
    train, evaluation, skipped = load_pairs(args)  # bad data fails before any model loads

    llm_path = args.llm_name_or_path or tiny_causal_lm_path(
        pretrain_steps=args.tiny_llm_pretrain_steps
    )
    preset = args.fallback_preset or ("default" if args.llm_name_or_path else "test")
    tokenizer = AutoTokenizer.from_pretrained(llm_path)
    processor = PixelFallbackProcessor(
        tokenizer,
        pixel_word_rule=args.pixel_word_rule,
        word_segmenter=args.word_segmenter,
        max_source_length=args.max_source_length or None,
        max_target_length=args.max_target_length or None,
    )
    dtype = torch.bfloat16 if training_args.bf16 else None
    llm = AutoModelForCausalLM.from_pretrained(llm_path, dtype=dtype)
    model = PixelFallbackForCausalLM(PixelFallbackConfig.from_preset(preset), llm)

    space = "" if args.use_chat_template and tokenizer.chat_template else " "

    def add_prompt(row):
        template = prompt_template(tokenizer, row["src_lang"], args.use_chat_template)
        return {"template": template, "target": space + row["tgt"]}

    train, evaluation = train.map(add_prompt), evaluation.map(add_prompt)
    training_args.remove_unused_columns = False  # the collator needs the raw text columns

    def collate(rows):
        return processor(
            [row["src"] for row in rows],
            template=[row["template"] for row in rows],
            target=[row["target"] for row in rows],
            output_format="uint8",  # compact pixels across the DataLoader; the encoder converts
        )

    results = evaluate(model, processor, evaluation, args, "before")
    model.freeze_language_model()
    train_stage(model, training_args, args.stage1_steps, train, collate)
    results.update(evaluate(model, processor, evaluation, args, "after_stage1"))
    from peft import LoraConfig

    model.apply_peft(
        LoraConfig(
            use_dora=True,
            r=args.lora_r,
            lora_alpha=args.lora_alpha,
            lora_dropout=args.lora_dropout,
            target_modules=args.lora_target_modules.split(","),
        )
    )
    train_stage(model, training_args, args.stage2_steps, train, collate)
    results.update(evaluate(model, processor, evaluation, args, "after"))

    output = Path(training_args.output_dir)
    model.save_pretrained(output)
    processor.save_pretrained(output)
    results.update(
        llm=llm_path,
        fallback_preset=preset,
        pixel_word_rule=args.pixel_word_rule,
        word_segmenter=processor.word_segmenter,
        eval_pairs=len(evaluation),
    )
    results.update({f"{split}_skipped_invalid_rows": count for split, count in skipped.items()})
    # eval_results.json and, as transformers' examples, all_results.json with the same content
    for name in ("eval_results.json", "all_results.json"):
        (output / name).write_text(json.dumps(results, indent=2) + "\n")
    write_fallback_card(output, model, processor, train, evaluation, results, args)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
