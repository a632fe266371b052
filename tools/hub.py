"""Make Hub-ready model folders: weights, config with auto_map, remote-code modules, renderer + fonts.

A folder written here loads on any machine with only transformers installed:
`AutoModel.from_pretrained(folder, trust_remote_code=True)` and
`AutoProcessor.from_pretrained(folder, trust_remote_code=True)` (the text renderer).

    pixel-m4-create --preset tiny --output_dir my-pixel-model
"""

import argparse
import shutil
import tempfile
from pathlib import Path

import torch

from ..configuration_pixel_m4 import PRESETS, PixelM4Config
from ..modeling_pixel_m4 import PixelM4ForPreTraining, PixelM4PreTrainedModel
from ..rendering_pixel_m4 import PixelM4TextRenderer

# The package root: the model files, which are exactly what Hub folders ship. A Hub folder is
# "root files + weights + fonts (+ README.md from a card template)". Every root .py file except
# __init__.py is in one of the two lists below and nothing else is (tests/test_hub.py checks this
# against the root and against saved folders).
PACKAGE_ROOT = Path(__file__).resolve().parents[1]

# The renderer class and its parts (both kinds of folder render text).
RENDERER_FILES = (
    "rendering_pixel_m4.py",
    "rendering_native.py",
    "rendering_fonts.py",
    "rendering_text.py",
    "rendering_ink.py",
    "rendering_bigrams.py",
    "rendering_continuous.py",
)
# A PIXEL-M4 folder (save_hub_folder): every module an auto_map or custom_pipelines entry of ours
# can name, so each resolves in the folder.
PIXEL_M4_HUB_FILES = (
    "configuration_pixel_m4.py",
    "layers_pixel.py",
    "modeling_pixel_m4.py",
    *RENDERER_FILES,
    "processing_pixel_m4.py",
    "pipeline_pixel_m4.py",
    "parsing_pixel_m4.py",
)
# A pixel fallback folder (PixelFallbackForCausalLM / PixelFallbackProcessor.save_pretrained):
# transformers' custom_object_save writes each class's module and its relative imports.
FALLBACK_HUB_FILES = (
    "configuration_pixel_fallback.py",
    "layers_pixel.py",
    "modeling_pixel_fallback.py",
    "processing_pixel_fallback.py",
    *RENDERER_FILES,
)


def save_hub_folder(
    model: PixelM4PreTrainedModel,
    renderer: PixelM4TextRenderer,
    output_dir: str | Path,
    **card_metadata,
) -> Path:
    """Save model (safetensors) + renderer (config + font files) + module files + a model card.

    `card_metadata` goes to `write_model_card` (e.g. base_model=..., datasets=[...]).
    """
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)  # + auto_map, custom_pipelines and their module files
    renderer.save_pretrained(output_dir)
    for name in PIXEL_M4_HUB_FILES:
        shutil.copy2(PACKAGE_ROOT / name, output_dir / name)
    if not (output_dir / "README.md").exists():
        write_model_card(output_dir, model, renderer, **card_metadata)
    return output_dir


def push_hub_folder(
    model: PixelM4PreTrainedModel,
    renderer: PixelM4TextRenderer,
    repo_id: str,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload PIXEL-M4 model",
    **card_metadata,
):
    """Upload model + renderer + fonts + module files + model card to the Hub in one commit.

    `model.push_to_hub` / `renderer.push_to_hub` also work, but each uploads only its own part
    (the model's push writes transformers' generic card as README.md); this sends the complete
    `save_hub_folder` folder, with the card's snippets loading `repo_id`.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as tmp:
        card_metadata.setdefault("model_id", repo_id)
        folder = save_hub_folder(
            model, renderer, Path(tmp) / repo_id.split("/")[-1], **card_metadata
        )
        return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message)


# What a training run leaves in its output folder besides the final model: checkpoints (with
# optimizer state), TensorBoard runs, reconstruction previews, the pickled arguments. Left out
# by `upload_output_folder`; with the CLI:
#   hf upload <repo_id> <output_dir> --exclude "checkpoint-*" "runs/*" "reconstructions/*" \
#       "training_args.bin"
TRAINING_LEFTOVERS = ("checkpoint-*", "runs/*", "reconstructions/*", "training_args.bin")


def upload_output_folder(
    output_dir: str | Path,
    repo_id: str,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload PIXEL-M4 model",
):
    """Upload a run script's output folder (e.g. `run_pretraining.py`'s, which saves the final
    model there as a Hub folder) without the training leftovers (`TRAINING_LEFTOVERS`)."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=output_dir,
        commit_message=commit_message,
        ignore_patterns=list(TRAINING_LEFTOVERS),
    )


def remote_code_auto_map() -> dict[str, str]:
    """auto_map for every registered class, so one repo serves AutoModel, AutoModelFor*, ..."""
    return PixelM4PreTrainedModel.remote_code_auto_map()


def create_hub_folder(
    output_dir: str | Path,
    preset: str = "tiny",
    seed: int = 0,
    renderer_kwargs: dict | None = None,
    **config_overrides,
) -> Path:
    """A randomly initialised `PixelM4ForPreTraining` + default renderer, saved as a Hub repo."""
    torch.manual_seed(seed)
    config = PixelM4Config.from_preset(preset, **config_overrides)
    model = PixelM4ForPreTraining(config)
    # The renderer fills exactly the model's strip unless told otherwise.
    renderer = PixelM4TextRenderer(
        **{"max_seq_length": config.num_patches, **(renderer_kwargs or {})}
    )
    return save_hub_folder(model, renderer, output_dir)


# Example sentences of the card's static outputs (the Hub widget cannot run custom code).
CARD_EXAMPLES = (
    "Pixels, not tokens.",
    "पिक्सेल, टोकन नहीं।",
    "Пікселі, а не токени.",
    "像素，而不是词元。",
)


def write_model_card(
    output_dir: str | Path,
    model: PixelM4PreTrainedModel | None = None,
    renderer: PixelM4TextRenderer | None = None,
    model_id: str | None = None,
    task_section: str = "",
    template: str = "model_card.md",
    fields: dict[str, str] | None = None,
    **metadata,
) -> Path:
    """Write `template` (a card at the package root: `model_card.md` for PIXEL-M4 encoders,
    `model_card_fallback.md` for a pixel fallback + causal LM), filled in, as
    `output_dir/README.md` (the Hub card).

    `metadata` updates the card's YAML header (e.g. `base_model="Team-PIXEL/pixel-m4"`,
    `datasets=[...]`, `language=[...]`, `license=...`, `tags=[...]`); None values are dropped.
    `model_id` (default: the folder name) is what the usage snippets load. `task_section`
    (markdown) describes a fine-tuned model's task, labels and results. With `model` and
    `renderer`, the card gets example outputs (cosine similarities of sentence embeddings) as
    text and as static widget outputs. `fields` fills (or overrides) `{{name}}` placeholders of
    the template.
    """
    from huggingface_hub import ModelCard, ModelCardData

    output_dir = Path(output_dir)
    card = ModelCard((PACKAGE_ROOT / template).read_text())
    data = card.data.to_dict()
    data.update({key: value for key, value in metadata.items() if value is not None})
    summary, max_patches, examples = "A pixel language model in the PIXEL-M4 format.", 529, ""
    if model is not None:
        config = model.config
        size = sum(p.numel() for p in model.parameters())
        summary = (
            f"A pixel language model ({type(model).__name__}, {size / 1e6:.1f}M parameters, "
            f"hidden size {config.hidden_size}, {config.num_hidden_layers} layers) in the "
            f"PIXEL-M4 format."
        )
        max_patches = config.num_patches
    if model is not None and renderer is not None:
        encoder = getattr(model, "vit", model)
        vectors = encoder.eval().embed(list(CARD_EXAMPLES), renderer, show_progress=False)
        similarity = (vectors @ vectors[0]).tolist()
        rows = [
            f"| {text} | {score:.3f} |"
            for text, score in zip(CARD_EXAMPLES, similarity, strict=True)
        ]
        examples = "| text | cosine similarity |\n|---|---|\n" + "\n".join(rows)
        data["widget"] = [
            {
                "text": text,
                "output": {"text": f"cosine similarity to '{CARD_EXAMPLES[0]}': {score:.3f}"},
            }
            for text, score in zip(CARD_EXAMPLES, similarity, strict=True)
        ]
    card.data = ModelCardData(**data)
    text = str(card)
    for name, value in {
        "model_name": output_dir.name,
        "model_id": model_id or output_dir.name,
        "model_summary": summary,
        "max_patches": str(max_patches),
        "renderer_settings": (
            "see preprocessor_config.json"
            if renderer is None
            else f"{renderer.render_mode} mode, {renderer.font_size} pt at {renderer.dpi} DPI, "
            f"{renderer.pixels_per_patch} px patches"
        ),
        "example_outputs": examples or "(written when the card is made from a model and renderer)",
        "task_section": task_section,
        "font_files": (
            "the `.ttf` / `.ttc` files"
            if renderer is None
            else ", ".join(f"`{Path(path).name}`" for path in renderer.font_file)
        ),
        **(fields or {}),
    }.items():
        text = text.replace("{{" + name + "}}", value)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "README.md").write_text(text, encoding="utf-8")
    return output_dir / "README.md"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Create a randomly initialised, Hub-ready PIXEL-M4 model folder "
        "(loadable with AutoModel/AutoProcessor.from_pretrained(..., trust_remote_code=True))."
    )
    parser.add_argument("--output_dir", required=True, help="folder to write (created if missing)")
    parser.add_argument(
        "--preset",
        default="tiny",
        choices=sorted(PRESETS),
        help="model size; 'base' is the paper's",
    )
    parser.add_argument(
        "--render_mode",
        default="bigram",
        choices=["bigram", "continuous", "word_bigram"],
        help="renderer mode saved with the model",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    args = parser.parse_args(argv)
    folder = create_hub_folder(
        args.output_dir, args.preset, args.seed, {"render_mode": args.render_mode}
    )
    print(f"wrote {folder}: {', '.join(sorted(p.name for p in folder.iterdir()))}")


if __name__ == "__main__":
    main()
