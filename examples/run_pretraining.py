"""Pretrain PIXEL-M4 (span-masked MAE on rendered text) on a multilingual corpus with Trainer.

With no arguments: a tiny model on the embedded EN/HI/UK/ZH sample corpus for a few hundred
steps on CPU, saved as a Hub-ready folder in outputs/pixel-m4-tiny, reloaded with
AutoModel.from_pretrained(..., trust_remote_code=True) and checked, with reconstruction PNGs in
outputs/pixel-m4-tiny/reconstructions/.

Paper-scale run (PIXEL-M4: base model, 1M steps, batch 256, equal EN/HI/UK/ZH mix of mC4's
per-language files, English included), e.g. on 8 GPUs:

    M=hf://datasets/allenai/c4/multilingual
    torchrun --nproc_per_node 8 examples/run_pretraining.py --model_config base --bf16 \\
        --corpus "en=$M/c4-en.*.json.gz" "hi=$M/c4-hi.*.json.gz" "uk=$M/c4-uk.*.json.gz" \\
        "zh=$M/c4-zh.*.json.gz" --streaming --max_steps 1000000 \\
        --per_device_train_batch_size 32 --dataloader_num_workers 8 \\
        --output_dir outputs/pixel-m4-base

Continued pretraining of a checkpoint on new languages:

    python examples/run_pretraining.py --model_name_or_path outputs/pixel-m4-tiny \\
        --corpus ar=my_arabic.txt ru=my_russian.jsonl --output_dir outputs/pixel-m4-tiny-ar-ru
"""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed
from transformers.integrations import is_tensorboard_available
from transformers.trainer_utils import HubStrategy

from pixel_m4.tools.hub import upload_output_folder
from pixel_m4.tools.pretraining import (
    PAPER_LANGUAGES,
    ReconstructionCallback,
    RenderingCollator,
    append_to_model_card,
    build_pretraining_dataset,
    load_pretraining_model,
    save_and_reload,
)
from pixel_m4.tools.task_cli import load_renderer, parse_args_or_file

logger = logging.getLogger(__name__)
SAMPLE_CORPUS = Path(__file__).resolve().parent / "data" / "pretrain"


@dataclass
class ModelArguments:
    model_config: str = field(
        default="tiny",
        metadata={
            "help": "Size of a new model: a preset (test, tiny, small, base = the paper's 86M "
            "encoder) or a config.json / model folder. Ignored with --model_name_or_path."
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Continue pretraining this checkpoint (folder or Hub id) instead of "
            "starting from random weights; its renderer is used unless --renderer_name_or_path."
        },
    )
    renderer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Folder or Hub id with a saved renderer (preprocessor_config.json)."},
    )
    render_mode: Literal["bigram", "continuous", "word_bigram"] = field(
        default="bigram",
        metadata={"help": "Rendering of a new renderer (bigram = PIXEL-M4, continuous = PIXEL)."},
    )
    font_file: list[str] | None = field(
        default=None,
        metadata={
            "help": "Font files of a new renderer, primary first (default: the shipped Noto "
            "fonts; the released checkpoints used GoNotoCurrent.ttf)."
        },
    )
    masking: Literal["span", "random"] | None = field(
        default=None,
        metadata={
            "help": "Patch masking: span (paper, spans of 1-6 patches) or random; default: the config's."
        },
    )
    mask_ratio: float | None = field(
        default=None,
        metadata={"help": "Fraction of text patches hidden (paper 0.25); default: the config's."},
    )
    norm_pix_loss: bool | None = field(
        default=None,
        metadata={
            "help": "Reconstruct per-patch normalised pixels (paper: true); default: the config's."
        },
    )
    hidden_dropout_prob: float | None = field(
        default=None,
        metadata={
            "help": "Dropout in every encoder and decoder block (default: the config's, 0.1)."
        },
    )
    attention_probs_dropout_prob: float | None = field(
        default=None,
        metadata={"help": "Dropout on attention probabilities (default: the config's, 0.1)."},
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = field(
        default="sdpa",
        metadata={"help": "Attention kernel; flash_attention_2 needs a GPU and flash-attn."},
    )


@dataclass
class DataArguments:
    corpus: list[str] = field(
        default_factory=lambda: [f"{lang}={SAMPLE_CORPUS / lang}.txt" for lang in PAPER_LANGUAGES],
        metadata={
            "help": "One LANG=SOURCE per language. SOURCE is a local .txt (a document per line), "
            ".json/.jsonl(.gz) or .parquet file or glob, the same on the Hub "
            "(hf://datasets/allenai/c4/multilingual/c4-en.*.json.gz: mC4 English), or a "
            "datasets name with an optional config, e.g. hi=allenai/c4:hi. Default: the "
            "embedded EN/HI/UK/ZH sample corpus."
        },
    )
    mixing_weights: list[float] | None = field(
        default=None,
        metadata={
            "help": "Sampling weight per --corpus entry, same order (default: equal, as the paper)."
        },
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    split: str = field(
        default="train", metadata={"help": "Split of a datasets corpus (local files: train)."}
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream the corpora instead of downloading them (needs --max_steps); packing "
            "and rendering then run lazily in the DataLoader workers."
        },
    )
    shuffle_buffer_size: int = field(
        default=10_000, metadata={"help": "Shuffle buffer of streamed corpora, in packed samples."}
    )
    stopping_strategy: Literal["first_exhausted", "all_exhausted"] = field(
        default="first_exhausted",
        metadata={
            "help": "When the language mix ends: when the first language runs out, so every "
            "sample is seen at most once (published), or after every language was seen once "
            "(all_exhausted: smaller corpora repeat)."
        },
    )
    preview_samples_per_language: int = field(
        default=1,
        metadata={"help": "Samples per language in the reconstruction PNGs (the first packed)."},
    )
    reconstruction_steps: int = field(
        default=100,
        metadata={
            "help": "Save a reconstruction PNG every this many steps (0: only at the end), "
            "in OUTPUT_DIR/reconstructions/."
        },
    )


@dataclass
class PretrainingArguments(TrainingArguments):
    """TrainingArguments with the published pretraining optimiser as defaults (AdamW, lr 1.5e-4,
    betas 0.9/0.999, weight decay 0.05, 5% warmup, then cosine decay to 1e-5 as
    get_cosine_schedule_to_min_lr_with_warmup in the published pixel/utils/optimization.py)
    and a run size that finishes in minutes on a CPU (raise --max_steps and the batch size for
    real runs)."""

    output_dir: str | None = field(
        default="outputs/pixel-m4-tiny",
        metadata={"help": "Where checkpoints, the final Hub-ready model and the PNGs go."},
    )
    max_steps: int = field(
        default=300, metadata={"help": "Optimiser steps (paper: 1,000,000 at batch 256)."}
    )
    per_device_train_batch_size: int = field(
        default=4, metadata={"help": "Batch size per device (paper: 256 in total)."}
    )
    learning_rate: float = field(default=1.5e-4, metadata={"help": "Peak learning rate."})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay."})
    lr_scheduler_type: str = field(
        default="cosine_with_min_lr",
        metadata={"help": "Learning-rate schedule after warmup (published: cosine to min_lr)."},
    )
    lr_scheduler_kwargs: dict | str | None = field(
        default_factory=lambda: {"min_lr": 1e-5},
        metadata={"help": "Arguments of the schedule, as JSON (published: min_lr 1e-5)."},
    )
    warmup_steps: float = field(
        default=0.05,
        metadata={"help": "Warmup steps, or a fraction of max_steps if < 1 (PIXEL: 0.05)."},
    )
    logging_steps: float = field(default=10, metadata={"help": "Log the loss every N steps."})
    dataloader_num_workers: int = field(
        default=1,
        metadata={"help": "DataLoader worker processes that render (and, streaming, pack) text."},
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "DDP: every parameter gets a gradient, so no search for unused ones."},
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Keep False: the collator renders the raw 'text' column."},
    )
    report_to: None | str | list[str] = field(
        default_factory=lambda: ["tensorboard"] if is_tensorboard_available() else ["none"],
        metadata={"help": "Loggers (default: TensorBoard if installed, in OUTPUT_DIR/runs)."},
    )

    def __post_init__(self):
        # Without a GPU, Trainer needs use_cpu for --bf16 (CPU autocast) and, under torchrun /
        # accelerate launch, to form a CPU process group (gloo) instead of N lone processes.
        if not torch.accelerator.is_available():
            self.use_cpu = True
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                self.ddp_backend = self.ddp_backend or "gloo"
        super().__post_init__()
        if self.push_to_hub:
            # The script pushes the final Hub folder once, without the training leftovers
            # (upload_output_folder). Trainer's pushes at each save would upload runs/ and
            # reconstructions/ (and checkpoints with the "checkpoint" strategies) next to a
            # model that has no renderer, fonts or remote code yet.
            if self.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
                raise ValueError(
                    f"--hub_strategy {self.hub_strategy.value}: run_pretraining.py pushes only "
                    "the final model folder (no checkpoints); use --hub_strategy end"
                )
            self.hub_strategy = HubStrategy.END


def parse_arguments(args=None):
    """Flags, or a single .json / .yaml args file as in transformers' examples."""
    parser = HfArgumentParser((ModelArguments, DataArguments, PretrainingArguments))
    parser.description = __doc__.split("\n\n")[0]
    return parse_args_or_file(parser, args)


def main():
    model_args, data_args, training_args = parse_arguments()

    set_seed(training_args.seed)  # before the model: its initialisation is part of the run
    model = load_pretraining_model(
        model_args.model_config,
        model_args.model_name_or_path,
        model_args.attn_implementation,
        masking=model_args.masking,
        mask_ratio=model_args.mask_ratio,
        norm_pix_loss=model_args.norm_pix_loss,
        hidden_dropout_prob=model_args.hidden_dropout_prob,
        attention_probs_dropout_prob=model_args.attention_probs_dropout_prob,
    )
    renderer = load_renderer(
        model_args.renderer_name_or_path or model_args.model_name_or_path,
        model.config.num_patches,
        model.config.patch_size,
        saved_length_must_match=True,
        render_mode=model_args.render_mode,
        font_file=model_args.font_file,
    )
    with training_args.main_process_first(desc="packing the corpus"):
        train_dataset, previews, probabilities = build_pretraining_dataset(
            data_args.corpus,
            renderer,
            data_args.mixing_weights,
            data_args.text_column,
            data_args.split,
            data_args.streaming,
            data_args.shuffle_buffer_size,
            data_args.stopping_strategy,
            training_args.seed,
            data_args.preview_samples_per_language,
        )
    languages = [language for language, _ in previews]
    logger.info(
        "%.1fM parameters; %d reconstruction samples",
        sum(p.numel() for p in model.parameters()) / 1e6,
        len(previews),
    )

    callbacks = []
    if previews:
        callbacks.append(
            ReconstructionCallback(
                renderer, previews, training_args.output_dir, data_args.reconstruction_steps
            )
        )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=RenderingCollator(renderer),
        callbacks=callbacks,
    )
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)  # train_results.json and all_results.json
    trainer.save_state()

    if trainer.is_world_process_zero():
        # the card's snippets load the pushed repo (default: the folder's name)
        card = {"model_id": trainer.hub_model_id} if training_args.push_to_hub else {}
        difference = save_and_reload(
            trainer.model,
            renderer,
            training_args.output_dir,
            [text for _, text in previews],
            **card,
        )
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        mix = ", ".join(
            f"{spec.split('=')[0]} {p:.2f}"
            for spec, p in zip(data_args.corpus, probabilities, strict=True)
        )
        batch_size = (
            training_args.train_batch_size
            * training_args.world_size
            * training_args.gradient_accumulation_steps
        )
        append_to_model_card(
            training_args.output_dir,
            "## Pretraining\n\nMasked-autoencoder pretraining with `examples/run_pretraining.py` "
            f"for {trainer.state.global_step} steps at batch size {batch_size}, language mix {mix}"
            + (f"; logged loss {losses[0]:.4f} -> {losses[-1]:.4f}." if losses else "."),
        )
        print(f"saved a Hub-ready model to {training_args.output_dir}")
        if training_args.push_to_hub:
            commit = upload_output_folder(
                training_args.output_dir,
                trainer.hub_model_id,
                private=training_args.hub_private_repo,
                token=training_args.hub_token,
                commit_message="End of training",
            )
            print(f"pushed the model folder (no training leftovers) to {commit.repo_url}")
        if losses:
            print(f"loss: first logged {losses[0]:.4f}, last logged {losses[-1]:.4f}")
        if callbacks and callbacks[0].last_path is not None:
            print(f"reconstructions ({', '.join(languages)}): {callbacks[0].last_path}")
        if difference != 0.0:
            raise SystemExit(
                f"reload check FAILED: AutoModel.from_pretrained(trust_remote_code=True) encoder "
                f"output differs from the trained encoder's by up to {difference:.3g}"
            )
        print(
            "reload check OK: AutoModel.from_pretrained(trust_remote_code=True) gives the "
            "trained encoder's outputs exactly"
        )


if __name__ == "__main__":
    main()
