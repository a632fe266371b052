"""Convert an original PIXEL / PIXEL-M4 checkpoint (Rust et al. 2023; Kesen et al. 2025) to pixel_m4.

The published checkpoints (`Team-PIXEL/pixel-base`, `.../pixel-m4`, `.../pixel-bigrams`) hold

* `config.json` with `model_type: "pixel"` and transformers' ViT-MAE field names,
* `pytorch_model.bin` (a pickled state dict: read with `torch.load(weights_only=True)`, which only
  rebuilds tensors) or `model.safetensors`,
* `text_renderer_config.json` + the font file it names (`GoNotoCurrent.ttf`).

The architecture is the same as ours (pre-LN ViT, exact-erf GELU, LayerNorm eps 1e-12, decoder
norm eps 1e-5, fixed 2-D sin-cos positions), so conversion renames weights and translates the two
configs. Weight names, original -> pixel_m4 (N = layer index; the decoder has the same per-layer
names under `decoder.decoder_layers.N`):

| original                                              | pixel_m4                                  |
|-------------------------------------------------------|-------------------------------------------|
| vit.embeddings.patch_embeddings.projection.{weight,bias} | vit.embeddings.patch_embeddings.*       |
| vit.embeddings.{cls_token,position_embeddings}         | (same)                                    |
| vit.encoder.layer.N.attention.attention.query          | vit.layers.N.attention.q_proj             |
| vit.encoder.layer.N.attention.attention.key            | vit.layers.N.attention.k_proj             |
| vit.encoder.layer.N.attention.attention.value          | vit.layers.N.attention.v_proj             |
| vit.encoder.layer.N.attention.output.dense             | vit.layers.N.attention.o_proj             |
| vit.encoder.layer.N.intermediate.dense                 | vit.layers.N.fc1                          |
| vit.encoder.layer.N.output.dense                       | vit.layers.N.fc2                          |
| vit.encoder.layer.N.layernorm_{before,after}           | vit.layers.N.layernorm_{before,after}     |
| vit.layernorm                                          | (same)                                    |
| decoder.decoder_layers.N.attention.attention.query ... | decoder.decoder_layers.N.attention.q_proj |
| decoder.{mask_token,decoder_pos_embed,decoder_embed,decoder_norm,decoder_pred} | (same)    |

`ORIGINAL_KEY_MAPPING` is the same table as regular expressions; it also works as transformers'
`from_pretrained(..., key_mapping=ORIGINAL_KEY_MAPPING)` for loading without a converted copy (see
`load_original_checkpoint`).

    python -m pixel_m4.tools.convert --checkpoint Team-PIXEL/pixel-m4 --output_dir pixel-m4-hf
"""

import argparse
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..configuration_pixel_m4 import PixelM4Config
from ..modeling_pixel_m4 import PixelM4ForPreTraining, PixelM4Model, PixelM4PreTrainedModel
from ..rendering_pixel_m4 import PixelM4TextRenderer, saved_font_name
from .hub import save_hub_folder

logger = logging.getLogger(__name__)

# Regex -> replacement, applied in order (the first match wins). Keys that match none keep their
# name (embeddings, final norms, decoder_* tensors are named the same on both sides).
ORIGINAL_KEY_MAPPING: dict[str, str] = {
    r"^vit\.embeddings\.patch_embeddings\.projection\.": "vit.embeddings.patch_embeddings.",
    r"^vit\.encoder\.layer\.(\d+)\.attention\.attention\.query\.": r"vit.layers.\1.attention.q_proj.",
    r"^vit\.encoder\.layer\.(\d+)\.attention\.attention\.key\.": r"vit.layers.\1.attention.k_proj.",
    r"^vit\.encoder\.layer\.(\d+)\.attention\.attention\.value\.": r"vit.layers.\1.attention.v_proj.",
    r"^vit\.encoder\.layer\.(\d+)\.attention\.output\.dense\.": r"vit.layers.\1.attention.o_proj.",
    r"^vit\.encoder\.layer\.(\d+)\.intermediate\.dense\.": r"vit.layers.\1.fc1.",
    r"^vit\.encoder\.layer\.(\d+)\.output\.dense\.": r"vit.layers.\1.fc2.",
    r"^vit\.encoder\.layer\.(\d+)\.layernorm_": r"vit.layers.\1.layernorm_",
    r"^decoder\.decoder_layers\.(\d+)\.attention\.attention\.query\.": r"decoder.decoder_layers.\1.attention.q_proj.",
    r"^decoder\.decoder_layers\.(\d+)\.attention\.attention\.key\.": r"decoder.decoder_layers.\1.attention.k_proj.",
    r"^decoder\.decoder_layers\.(\d+)\.attention\.attention\.value\.": r"decoder.decoder_layers.\1.attention.v_proj.",
    r"^decoder\.decoder_layers\.(\d+)\.attention\.output\.dense\.": r"decoder.decoder_layers.\1.attention.o_proj.",
    r"^decoder\.decoder_layers\.(\d+)\.intermediate\.dense\.": r"decoder.decoder_layers.\1.fc1.",
    r"^decoder\.decoder_layers\.(\d+)\.output\.dense\.": r"decoder.decoder_layers.\1.fc2.",
}  # fmt: skip

# Config fields with the same name and meaning in PIXELConfig and PixelM4Config.
_SHARED_CONFIG_FIELDS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
    "image_size", "patch_size", "num_channels", "qkv_bias", "decoder_hidden_size",
    "decoder_num_hidden_layers", "decoder_num_attention_heads", "decoder_intermediate_size",
    "norm_pix_loss",
)  # fmt: skip

# Original renderer classes -> our render modes.
_RENDERER_MODES = {
    "PangoCairoTextRenderer": "continuous",  # PIXEL (pixel-base)
    "PangoCairoBigramsRenderer": "bigram",  # PIXEL-BIGRAMS, PIXEL-M4
}


def rename_original_key(key: str) -> str:
    for pattern, replacement in ORIGINAL_KEY_MAPPING.items():
        renamed, count = re.subn(pattern, replacement, key)
        if count:
            return renamed
    return key


def convert_config(original: dict) -> PixelM4Config:
    """PixelM4Config from an original `config.json` dict (model_type "pixel")."""
    if original.get("model_type") != "pixel":
        raise ValueError(
            f"config.json: expected an original PIXEL config (model_type 'pixel'), got "
            f"model_type={original.get('model_type')!r}"
        )
    if original.get("embedding_layernorm"):
        raise ValueError(
            "config.json: embedding_layernorm=True checkpoints (a LayerNorm after the patch "
            "embeddings) are not supported by pixel_m4"
        )
    fields = {name: original[name] for name in _SHARED_CONFIG_FIELDS if name in original}
    fields["image_size"] = list(fields.get("image_size", (16, 8464)))
    mask_ratio = original.get("mask_ratio")
    if mask_ratio is not None and 0 < mask_ratio < 1:
        fields["mask_ratio"] = mask_ratio
    else:
        # Fine-tuned checkpoints store mask_ratio 0 (no masking at inference); ours masks only in
        # pretraining, so the paper's ratio stays for anyone who continues pretraining.
        logger.info("original mask_ratio=%r not in (0, 1); using 0.25", mask_ratio)
    return PixelM4Config(**fields)


def convert_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {rename_original_key(key): tensor for key, tensor in state_dict.items()}


def read_original_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The state dict of an original folder: model.safetensors, else pytorch_model.bin (loaded with
    weights_only=True: tensors only, no arbitrary pickled objects)."""
    if (folder / "model.safetensors").exists():
        return load_file(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").exists():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder}: neither model.safetensors nor pytorch_model.bin found")


def convert_renderer(folder: Path, render_mode: str | None = None) -> PixelM4TextRenderer:
    """Our renderer with the original's font file, size, DPI, patch size and length."""
    path = folder / "text_renderer_config.json"
    if not path.exists():
        raise FileNotFoundError(f"{folder}: text_renderer_config.json not found")
    original = json.loads(path.read_text())
    if render_mode is None:
        kind = original.get("text_renderer_type")
        if kind not in _RENDERER_MODES:
            raise ValueError(
                f"{path}: unknown text_renderer_type {kind!r}; pass render_mode= one of "
                "'bigram', 'continuous', 'word_bigram'"
            )
        render_mode = _RENDERER_MODES[kind]
    if "font_file" not in original:
        raise ValueError(f"{path}: no font_file entry")
    # the published renderer saves the font's file name next to its config (never a path)
    font = folder / saved_font_name(original["font_file"], path)
    if not font.exists():
        raise FileNotFoundError(
            f"{path} names font_file {original['font_file']!r}, not found in {folder}"
        )
    return PixelM4TextRenderer(
        render_mode=render_mode,
        font_file=str(font),
        font_size=original.get("font_size", 8),
        dpi=original.get("dpi", 120),
        pixels_per_patch=original.get("pixels_per_patch", 16),
        max_seq_length=original.get("max_seq_length", 529),
    )


def convert_pixel_checkpoint(
    checkpoint: str | Path,
    output_dir: str | Path,
    render_mode: str | None = None,
    overwrite: bool = False,
    **card_metadata,
) -> Path:
    """Original PIXEL / PIXEL-M4 folder (or Hub id) -> a pixel_m4 Hub folder in `output_dir`.

    Checkpoints with the MAE decoder become `PixelM4ForPreTraining`, encoder-only ones
    `PixelM4Model`. Weight names not in the mapping (e.g. an original task head) raise, listed.
    `render_mode` overrides the mode derived from `text_renderer_type`.

    The source is never written to: `output_dir` must be new or empty (or is replaced as a
    whole with `overwrite=True`) and must not be the checkpoint folder, inside it or around
    it. The folder is written next to `output_dir` under a temporary name and renamed into
    place when complete, so a failed conversion leaves nothing half-written behind.
    """
    folder = resolve_checkpoint(checkpoint)
    output_dir = check_output_dir(folder, output_dir, overwrite)
    config = convert_config(json.loads((folder / "config.json").read_text()))
    state_dict = convert_state_dict(read_original_weights(folder))
    model: PixelM4PreTrainedModel
    if any(key.startswith("decoder.") for key in state_dict):
        model = PixelM4ForPreTraining(config)
    else:
        model = PixelM4Model(config)
        state_dict = {key.removeprefix("vit."): tensor for key, tensor in state_dict.items()}
    expected = model.state_dict()
    unexpected = sorted(set(state_dict) - set(expected))
    missing = sorted(set(expected) - set(state_dict))
    if unexpected or missing:
        raise ValueError(
            f"{folder}: weights do not match {type(model).__name__}; "
            f"not convertible: {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}; "
            f"missing: {missing[:10]}{' ...' if len(missing) > 10 else ''}"
        )
    for key, tensor in state_dict.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(
                f"{folder}: {key} has shape {tuple(tensor.shape)}, the config implies "
                f"{tuple(expected[key].shape)}"
            )
    model.load_state_dict(state_dict, strict=True)
    renderer = convert_renderer(folder, render_mode)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    # same parent (so the rename is atomic), same name (the model card names its folder)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{output_dir.name}.converting-", dir=output_dir.parent)
    )
    try:
        save_hub_folder(model, renderer, staging / output_dir.name, **card_metadata)
        _replace_folder(staging / output_dir.name, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def check_output_dir(source: Path, output_dir: str | Path, overwrite: bool) -> Path:
    """The absolute output folder, after checking that writing it cannot touch the source."""
    output_dir = Path(output_dir).expanduser().resolve()
    source = source.resolve()
    if output_dir == source or source in output_dir.parents or output_dir in source.parents:
        raise ValueError(
            f"--output_dir {output_dir} would overwrite the checkpoint {source}: the converter "
            "never writes into (or around) its source; choose another folder"
        )
    if output_dir.exists():
        if not output_dir.is_dir():
            raise ValueError(f"--output_dir {output_dir} exists and is not a folder")
        if any(output_dir.iterdir()) and not overwrite:
            raise ValueError(
                f"--output_dir {output_dir} is not empty: choose a new or empty folder, or pass "
                "--overwrite to replace it as a whole (stale weight files would otherwise mix "
                "with the new ones)"
            )
    return output_dir


def _replace_folder(staging: Path, output_dir: Path) -> None:
    """Renames the complete `staging` folder to `output_dir`, replacing what was there."""
    if not output_dir.exists():
        os.rename(staging, output_dir)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.old-", dir=output_dir.parent))
    os.rename(output_dir, retired / "folder")
    try:
        os.rename(staging, output_dir)
    except OSError:
        os.rename(retired / "folder", output_dir)  # put the old folder back
        raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)


def load_original_checkpoint(checkpoint: str | Path, model_class=PixelM4ForPreTraining):
    """Load an original folder directly with transformers' `key_mapping` (no converted copy).

    The config is translated (`convert_config`); transformers reads `pytorch_model.bin` with
    weights_only=True and renames keys with `ORIGINAL_KEY_MAPPING` while loading.
    """
    folder = resolve_checkpoint(checkpoint)
    config = convert_config(json.loads((folder / "config.json").read_text()))
    return model_class.from_pretrained(folder, config=config, key_mapping=ORIGINAL_KEY_MAPPING)


def resolve_checkpoint(checkpoint: str | Path) -> Path:
    """A local folder as is; otherwise a Hub repo id, downloaded (config, weights, renderer, font).

    Anything that reads as a path (absolute, ./ or ../, ~, more than one '/', an existing file)
    or is not a valid repo id is a local folder that must exist: no download is tried for it.
    """
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"checkpoint folder {path} has no config.json")
        return path
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    text = str(checkpoint)
    try:
        validate_repo_id(text)
        looks_like_path = (
            path.is_absolute() or text.startswith((".", "~")) or path.exists() or os.sep != "/"
        )
    except HFValidationError:
        looks_like_path = True
    if looks_like_path:
        what = "is not a folder" if path.exists() else "does not exist"
        raise FileNotFoundError(f"--checkpoint {text!r} {what} (expected a checkpoint folder)")
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                text, allow_patterns=["*.json", "*.bin", "*.safetensors", "*.ttf", "*.otf", "*.ttc"]
            )
        )
    except Exception as error:
        raise FileNotFoundError(
            f"--checkpoint {text!r} is not a local folder, and downloading it as a Hub repo "
            f"failed: {type(error).__name__}: {error}"
        ) from error


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Convert an original PIXEL / PIXEL-M4 checkpoint (model_type 'pixel', "
        "pytorch_model.bin, text_renderer_config.json + font) into a pixel_m4 Hub folder "
        "(safetensors, auto_map, remote code, our renderer with the same font)."
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="original checkpoint: a local folder or a Hub id such as Team-PIXEL/pixel-m4",
    )
    parser.add_argument(
        "--output_dir", required=True, help="new or empty folder to write (created if missing)"
    )
    parser.add_argument(
        "--render_mode",
        choices=["bigram", "continuous", "word_bigram"],
        default=None,
        help="renderer mode; default: derived from text_renderer_type "
        "(PangoCairoTextRenderer -> continuous, PangoCairoBigramsRenderer -> bigram)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a non-empty --output_dir as a whole (never allowed for the checkpoint)",
    )
    args = parser.parse_args(argv)
    folder = convert_pixel_checkpoint(
        args.checkpoint, args.output_dir, args.render_mode, overwrite=args.overwrite
    )
    print(f"wrote {folder}: {', '.join(sorted(p.name for p in folder.iterdir()))}")


if __name__ == "__main__":
    main()
