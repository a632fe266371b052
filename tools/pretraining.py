"""Multilingual MAE pretraining of PIXEL-M4: corpora, packing, language mixing, rendering, previews.

`examples/run_pretraining.py` wires these pieces into a `Trainer`. The data flow follows the
PIXEL-M4 paper (§2): every sample is text of ONE language, batches mix languages.

    per language   load_corpus (local text/JSON/Parquet or a Hub dataset, optionally streamed)
                   -> StripPacker: consecutive lines joined until the 529-patch strip is full
    all languages  mix_languages: datasets.interleave_datasets with the mixing weights
    DataLoader     RenderingCollator renders the packed texts in the worker that collates them
    model          PixelM4ForPreTraining draws the span mask and computes the loss
    callback       ReconstructionCallback saves original / masked / reconstructed PNGs

Rendering happens on the fly (nothing rendered is stored), in DataLoader workers when
`dataloader_num_workers > 0`; the renderer is fork-safe.
"""

import glob
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import datasets
import torch
from transformers import TrainerCallback

from ..configuration_pixel_m4 import PRESETS, PixelM4Config
from ..modeling_pixel_m4 import PixelM4ForPreTraining, patchify, unpatchify
from ..rendering_pixel_m4 import PixelM4TextRenderer, clean_words, strip_to_grid
from .hub import save_hub_folder

logger = logging.getLogger(__name__)

PAPER_LANGUAGES = ("en", "hi", "uk", "zh")
# How a local corpus file is read, by suffix (compressed JSON, e.g. mC4's *.json.gz, included).
FILE_BUILDERS = {
    ".txt": "text",
    ".json": "json",
    ".jsonl": "json",
    ".json.gz": "json",
    ".jsonl.gz": "json",
    ".parquet": "parquet",
}
PACKED_FEATURES = datasets.Features(
    {"text": datasets.Value("string"), "language": datasets.Value("string")}
)


# ---------------------------------------------------------------------------------------------
# Model (its renderer: tools.task_cli.load_renderer)
# ---------------------------------------------------------------------------------------------


def load_pretraining_model(
    model_config: str = "tiny",
    model_name_or_path: str | None = None,
    attn_implementation: str = "sdpa",
    **config_overrides,
) -> PixelM4ForPreTraining:
    """A new model from a preset name or config path, or a checkpoint to continue pretraining.

    `config_overrides` (e.g. masking="random", mask_ratio=0.4; None values are ignored) change
    the objective of either; the architecture of a checkpoint stays its own.
    """
    overrides = {key: value for key, value in config_overrides.items() if value is not None}
    if model_name_or_path is not None:
        config = PixelM4Config.from_pretrained(model_name_or_path, **overrides)
        return PixelM4ForPreTraining.from_pretrained(
            model_name_or_path, config=config, attn_implementation=attn_implementation
        )
    if model_config in PRESETS:
        config = PixelM4Config.from_preset(model_config, **overrides)
    elif os.path.exists(model_config):
        config = PixelM4Config.from_pretrained(model_config, **overrides)
    else:
        raise ValueError(
            f"--model_config must be a preset ({', '.join(PRESETS)}) or a config.json / model "
            f"folder, got {model_config!r}"
        )
    config._attn_implementation = attn_implementation
    return PixelM4ForPreTraining(config)


# ---------------------------------------------------------------------------------------------
# Corpora
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusSource:
    """One language's corpus: local files (a path or glob) or a `datasets` name + config."""

    language: str
    source: str
    config: str | None = None


def parse_corpus_spec(spec: str) -> CorpusSource:
    """`LANG=PATH_OR_GLOB` or `LANG=DATASET[:CONFIG]`, e.g. `hi=allenai/c4:hi`, `en=data/en.txt`."""
    language, separator, source = spec.partition("=")
    language, source = language.strip(), source.strip()
    if not separator or not language or not source:
        raise ValueError(
            f"--corpus entries must look like LANG=PATH or LANG=DATASET[:CONFIG] "
            f"(e.g. en=examples/data/pretrain/en.txt, hi=allenai/c4:hi), got {spec!r}"
        )
    if _local_files(source) or os.path.isdir(source) or _looks_like_file(source):
        return CorpusSource(language, source)
    name, _, config = source.partition(":")
    return CorpusSource(language, name, config or None)


def _local_files(source: str) -> list[str]:
    return sorted(path for path in glob.glob(os.path.expanduser(source)) if os.path.isfile(path))


def _looks_like_file(source: str) -> bool:
    return source.startswith((".", "/", "~", "hf://")) or _file_builder(source) is not None


def _file_builder(path: str) -> str | None:
    name = path.lower()
    for suffix in sorted(FILE_BUILDERS, key=len, reverse=True):
        if name.endswith(suffix):
            return FILE_BUILDERS[suffix]
    return None


def load_corpus(
    corpus: CorpusSource, split: str = "train", streaming: bool = False
) -> datasets.Dataset | datasets.IterableDataset:
    """The raw documents of one language, from local files or `datasets.load_dataset`.

    Local files: `.txt` (one document per line), `.json`/`.jsonl` (optionally `.gz`),
    `.parquet`; all files of a glob must share a format. `hf://datasets/<repo>/<glob>` reads
    files of a Hub dataset repo the same way (e.g. mC4's per-language files in allenai/c4).
    Anything else is a dataset name (Hub id or dataset folder) loaded with its config and
    `split`, streamed if `streaming`.
    """
    if corpus.source.startswith("hf://"):
        builder = _file_builder(corpus.source)
        if builder is None:
            raise ValueError(
                f"--corpus {corpus.language}={corpus.source}: Hub files must end in one of "
                f"{sorted(FILE_BUILDERS)}"
            )
        return datasets.load_dataset(
            builder, data_files={"train": corpus.source}, split="train", streaming=streaming
        )
    files = _local_files(corpus.source)
    if not files:
        if _looks_like_file(corpus.source) and not os.path.isdir(corpus.source):
            raise FileNotFoundError(
                f"--corpus {corpus.language}={corpus.source}: no such file (a path, a glob, or a "
                "dataset name like allenai/c4:hi)"
            )
        return datasets.load_dataset(corpus.source, corpus.config, split=split, streaming=streaming)
    builders = {_file_builder(path) for path in files}
    if None in builders or len(builders) > 1:
        raise ValueError(
            f"--corpus {corpus.language}={corpus.source}: files must all be one of "
            f"{sorted(FILE_BUILDERS)}, got {[Path(path).name for path in files][:5]}"
        )
    builder = builders.pop()
    try:
        return datasets.load_dataset(
            builder, data_files={"train": files}, split="train", streaming=streaming
        )
    except Exception as error:  # DatasetGenerationError names no file: say which
        cause = error.__cause__ or error
        raise ValueError(
            f"--corpus {corpus.language}={corpus.source}: cannot read {len(files)} file(s) "
            f"{[Path(path).name for path in files][:5]} as {builder}: {type(cause).__name__}: "
            f"{cause}"
        ) from error


# ---------------------------------------------------------------------------------------------
# Packing: fill each strip with consecutive lines of one language
# ---------------------------------------------------------------------------------------------


class StripPacker:
    """Joins consecutive lines of a corpus into texts that just fill one rendered strip.

    Every line is rendered once on its own to learn its text patch count (`num_patches - 1`:
    the end patch is shared). In bigram and word_bigram modes every word starts at a patch
    boundary, so counts add up exactly and the packed text renders without truncation; in
    continuous mode they are an estimate (the renderer truncates the rare overshoot). A line
    longer than a strip is cut where the renderer's `overflow` says the words stop fitting; a
    single word longer than a strip (scripts written without spaces) is cut into halves at even
    character offsets, which keeps its bigram pairs.

    Use as `dataset.map(packer, batched=True, remove_columns=...)`: each map batch is packed on
    its own, so at most one strip per batch of lines is left partly filled.
    """

    def __init__(self, renderer: PixelM4TextRenderer, language: str, text_column: str = "text"):
        self.renderer = renderer
        self.language = language
        self.text_column = text_column

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        if self.text_column not in batch:
            raise ValueError(
                f"--text_column {self.text_column!r} is not a column of the {self.language} "
                f"corpus; its columns are {sorted(batch)}"
            )
        texts = list(self.pack(batch[self.text_column]))
        return {"text": texts, "language": [self.language] * len(texts)}

    def pack(self, documents: Iterable[str | None]) -> Iterator[str]:
        """Packed texts (words joined by single spaces), in corpus order."""
        budget = self.renderer.max_seq_length - 1  # text patches; the end patch follows
        current, used = [], 0
        for document in documents:
            for line in (document or "").splitlines():
                for piece, patches in self.pieces(line):
                    if current and used + patches > budget:
                        yield " ".join(current)
                        current, used = [], 0
                    current.append(piece)
                    used += patches
        if current:
            yield " ".join(current)

    def pieces(self, line: str) -> Iterator[tuple[str, int]]:
        """(text, text patches) chunks of a line, each fitting in one strip on its own."""
        words = clean_words(line)
        while words:
            rendered = self.renderer.render(" ".join(words))
            fitted = len(words) - rendered.overflow
            if fitted == 0:  # one "word" wider than a strip, e.g. a Chinese paragraph
                word = words[0]
                if len(word) < 4:
                    logger.warning("dropping a word wider than a strip: %r", word)
                    words = words[1:]
                    continue
                # Cut at an even code point offset: the halves keep the word's character pairs.
                cut = len(word) // 4 * 2
                words = [word[:cut], word[cut:], *words[1:]]
                continue
            yield " ".join(words[:fitted]), rendered.num_patches - 1
            words = words[fitted:]


def pack_corpus(
    dataset: datasets.Dataset | datasets.IterableDataset,
    renderer: PixelM4TextRenderer,
    language: str,
    text_column: str = "text",
) -> datasets.Dataset | datasets.IterableDataset:
    """Packed samples {"text", "language"} of one language (lazy for streaming datasets)."""
    columns = dataset.column_names
    if columns is not None and text_column not in columns:
        raise ValueError(
            f"--text_column {text_column!r} is not a column of the {language} corpus; "
            f"its columns are {columns}"
        )
    packer = StripPacker(renderer, language, text_column)
    progress = (
        {} if isinstance(dataset, datasets.IterableDataset) else {"desc": f"packing {language}"}
    )
    return dataset.map(
        packer, batched=True, remove_columns=columns, features=PACKED_FEATURES, **progress
    )


# ---------------------------------------------------------------------------------------------
# Mixing languages
# ---------------------------------------------------------------------------------------------


def mixing_probabilities(languages: list[str], weights: list[float] | None) -> list[float]:
    """Normalised sampling probabilities; None -> equal over the languages (the paper's mix)."""
    if weights is None:
        return [1 / len(languages)] * len(languages)
    if len(weights) != len(languages):
        raise ValueError(
            f"--mixing_weights needs one weight per --corpus entry ({len(languages)}: "
            f"{', '.join(languages)}), got {len(weights)}"
        )
    if any(not weight > 0 for weight in weights):
        raise ValueError(f"--mixing_weights must all be > 0, got {weights}")
    return [weight / sum(weights) for weight in weights]


def mix_languages(
    packed: list[datasets.Dataset | datasets.IterableDataset],
    probabilities: list[float],
    seed: int,
    stopping_strategy: str = "first_exhausted",
):
    """One stream whose every sample is drawn from language i with probability p_i; it ends when
    the first language runs out, so no sample repeats (run_pretraining_pixel_m4.py of the
    published code; the paper: "each sample ... only once")."""
    if len(packed) == 1:
        return packed[0]
    return datasets.interleave_datasets(
        packed, probabilities=probabilities, seed=seed, stopping_strategy=stopping_strategy
    )


def first_samples(dataset, count: int) -> list[dict]:
    """The first `count` samples of a (possibly streaming) dataset."""
    return list(islice(iter(dataset), count))


def build_pretraining_dataset(
    corpus: list[str],
    renderer: PixelM4TextRenderer,
    mixing_weights: list[float] | None = None,
    text_column: str = "text",
    split: str = "train",
    streaming: bool = False,
    shuffle_buffer_size: int = 10_000,
    stopping_strategy: str = "first_exhausted",
    seed: int = 42,
    preview_samples_per_language: int = 1,
):
    """Packed, language-mixed training samples {"text", "language"} from `LANG=SOURCE` specs,
    plus the first `preview_samples_per_language` packed (language, text) samples per language
    for the reconstruction previews. Streaming corpora are shuffled in a buffer (a map-style
    dataset is shuffled by the Trainer's sampler)."""
    if not corpus:
        raise ValueError("--corpus needs at least one LANG=SOURCE entry")
    sources = [parse_corpus_spec(spec) for spec in corpus]
    probabilities = mixing_probabilities([source.language for source in sources], mixing_weights)
    packed, previews = [], []
    for source in sources:
        samples = pack_corpus(
            load_corpus(source, split, streaming), renderer, source.language, text_column
        )
        first = first_samples(samples, max(1, preview_samples_per_language))
        if not first:
            raise ValueError(
                f"--corpus {source.language}={source.source}: no text in column {text_column!r}"
            )
        previews += [
            (source.language, sample["text"]) for sample in first[:preview_samples_per_language]
        ]
        if streaming:
            samples = samples.shuffle(seed=seed, buffer_size=shuffle_buffer_size)
        packed.append(samples)
    return mix_languages(packed, probabilities, seed, stopping_strategy), previews, probabilities


# ---------------------------------------------------------------------------------------------
# Rendering in the DataLoader
# ---------------------------------------------------------------------------------------------


@dataclass
class RenderingCollator:
    """Renders a batch of packed texts to model inputs, in the DataLoader worker collating it."""

    renderer: PixelM4TextRenderer
    output_format: str = "uint8"  # the compact format: 12x fewer bytes across worker boundaries

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        # Full strips: pretraining packs text up to the strip's end (the published recipe), so
        # there is little padding to save and every step keeps the same shape.
        batch = self.renderer(
            [example["text"] for example in examples],
            return_tensors="pt",
            padding="max_length",
            output_format=self.output_format,
        )
        return {"pixel_values": batch["pixel_values"], "attention_mask": batch["attention_mask"]}


# ---------------------------------------------------------------------------------------------
# Visual feedback
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def save_reconstructions(
    model: PixelM4ForPreTraining,
    pixel_values: torch.Tensor,
    attention_mask: torch.Tensor,
    patch_mask: torch.Tensor,
    labels: list[str],
    path: str | Path,
    title: str = "",
) -> float:
    """PNG with one row per sample: original / masked / reconstructed, each strip shown as a
    23 x 23 grid of patches. Returns the reconstruction loss on these samples."""
    from matplotlib.figure import Figure  # no pyplot: no global state, works headless

    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        output = model(
            pixel_values.to(device), attention_mask.to(device), patch_mask=patch_mask.to(device)
        )
    finally:
        model.train(was_training)
    original = pixel_values.float()
    # The hidden text patches; `output.mask` also marks padding dropped to keep batches even.
    hidden = patch_mask.bool() & attention_mask.bool()
    reconstructed = model.reconstruct(original.to(device), output.logits, hidden.to(device)).cpu()
    patch_size, channels = model.config.patch_size, model.config.num_channels
    masked = unpatchify(
        patchify(original, patch_size).masked_fill(hidden[..., None], 0.5), patch_size, channels
    )
    grid = round(model.config.num_patches**0.5)

    columns = [("original", original), ("masked", masked), ("reconstructed", reconstructed)]
    figure = Figure(figsize=(9, 3.1 * len(labels)), layout="constrained")
    axes = figure.subplots(len(labels), 3, squeeze=False)
    for row, label in enumerate(labels):
        for column, (name, strips) in enumerate(columns):
            axis = axes[row, column]
            axis.imshow(strip_to_grid(strips[row, 0], grid).numpy(), cmap="gray", vmin=0, vmax=1)
            axis.set_title(f"{name} ({label})", fontsize=9)
            axis.set_axis_off()
    loss = float(output.loss)
    figure.suptitle(f"{title}  loss on these samples {loss:.4f}".strip(), fontsize=10)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    return loss


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------


def save_and_reload(
    model: PixelM4ForPreTraining,
    renderer: PixelM4TextRenderer,
    output_dir: str | Path,
    texts: list[str],
    **card_metadata,
) -> float:
    """Save a Hub-ready folder, load it back with `AutoModel.from_pretrained(...,
    trust_remote_code=True)` and return the largest difference between the reloaded encoder's
    and the trained encoder's outputs on `texts` (0.0 when the round trip is exact).
    `card_metadata` goes to the model card (e.g. model_id=<the Hub repo it is pushed to>)."""
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    folder = save_hub_folder(model, renderer, output_dir, **card_metadata)
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # the decoder weights are unused by AutoModel
    try:
        reloaded, info = AutoModel.from_pretrained(
            folder,
            trust_remote_code=True,
            output_loading_info=True,
            attn_implementation=model.config._attn_implementation,  # same kernel, same numbers
        )
    finally:
        transformers_logging.set_verbosity(verbosity)
    if info["missing_keys"]:
        raise RuntimeError(f"{folder} lacks encoder weights: {sorted(info['missing_keys'])[:5]}")
    device = next(model.parameters()).device
    reloaded.to(device).eval()
    inputs = renderer(texts, return_tensors="pt").to(device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        trained = model.vit(inputs["pixel_values"], inputs["attention_mask"]).last_hidden_state
        loaded = reloaded(inputs["pixel_values"], inputs["attention_mask"]).last_hidden_state
    model.train(was_training)
    return float((trained.float() - loaded.float()).abs().max())


def append_to_model_card(output_dir: str | Path, section: str) -> None:
    """Add a markdown section ("## Title\n...") to the folder's README.md, replacing an earlier
    section of the same title (a rerun into the same folder)."""
    card = Path(output_dir) / "README.md"
    text = card.read_text(encoding="utf-8")
    title = section.strip().splitlines()[0]
    if title in text:
        start = text.index(title)
        end = text.find("\n## ", start + len(title))
        text = text[:start] + (text[end + 1 :] if end != -1 else "")
    card.write_text(text.rstrip() + "\n\n" + section.strip() + "\n", encoding="utf-8")


class ReconstructionCallback(TrainerCallback):
    """Every `every_n_steps` optimiser steps and at the end of training, saves
    `<output_dir>/reconstructions/step-NNNNNN.png` for a fixed set of (language, text) samples
    and one fixed patch mask, so successive images are comparable. Runs on the main process
    only and draws its mask from its own generator (the training RNG stream is untouched)."""

    def __init__(
        self,
        renderer: PixelM4TextRenderer,
        samples: list[tuple[str, str]],
        output_dir: str | Path,
        every_n_steps: int,
        seed: int = 0,
    ):
        if not samples:
            raise ValueError("ReconstructionCallback needs at least one (language, text) sample")
        if every_n_steps < 0:
            raise ValueError(f"--reconstruction_steps must be >= 0, got {every_n_steps}")
        self.labels = [language for language, _ in samples]
        rendered = renderer([text for _, text in samples], return_tensors="pt")
        self.pixel_values = rendered["pixel_values"]
        self.attention_mask = rendered["attention_mask"]
        self.directory = Path(output_dir) / "reconstructions"
        self.every_n_steps = every_n_steps
        self.seed = seed
        self.patch_mask = None
        self.last_path: Path | None = None
        self.last_loss: float | None = None

    def save(self, model: PixelM4ForPreTraining, step: int) -> Path:
        if self.patch_mask is None:  # drawn once, with the model's masking scheme
            generator = torch.Generator().manual_seed(self.seed)
            self.patch_mask = model.sample_patch_mask(self.attention_mask, generator)
        path = self.directory / f"step-{step:06d}.png"
        self.last_loss = save_reconstructions(
            model,
            self.pixel_values,
            self.attention_mask,
            self.patch_mask,
            self.labels,
            path,
            title=f"step {step}",
        )
        self.last_path = path
        return path

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if (
            state.is_world_process_zero
            and self.every_n_steps
            and state.global_step % self.every_n_steps == 0
        ):
            self.save(model, state.global_step)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        final = self.directory / f"step-{state.global_step:06d}.png"
        if state.is_world_process_zero and self.last_path != final:
            self.save(model, state.global_step)


__all__ = [
    "PAPER_LANGUAGES",
    "CorpusSource",
    "parse_corpus_spec",
    "load_corpus",
    "StripPacker",
    "pack_corpus",
    "mixing_probabilities",
    "mix_languages",
    "first_samples",
    "build_pretraining_dataset",
    "load_pretraining_model",
    "save_and_reload",
    "append_to_model_card",
    "RenderingCollator",
    "save_reconstructions",
    "ReconstructionCallback",
]
