"""Make Hub-ready model folders: weights, config with auto_map, remote-code modules, renderer + fonts.

A folder written here loads on any machine with only transformers installed:
`AutoModel.from_pretrained(folder, trust_remote_code=True)` and
`AutoProcessor.from_pretrained(folder, trust_remote_code=True)` (the text renderer).

    pixel-m4-create --preset tiny --output_dir my-pixel-model
"""

import argparse
import shutil
from pathlib import Path

import torch

from .configuration_pixel_m4 import PRESETS, PixelM4Config
from .modeling_pixel_m4 import PixelM4ForPreTraining, PixelM4PreTrainedModel
from .rendering_pixel_m4 import PixelM4TextRenderer

# The modules a Hub repo of ours carries, so that every auto_map entry resolves there.
REMOTE_CODE_MODULES = (
    "configuration_pixel_m4.py",
    "modeling_pixel_m4.py",
    "rendering_pixel_m4.py",
    "processing_pixel_m4.py",
)


def save_hub_folder(
    model: PixelM4PreTrainedModel, renderer: PixelM4TextRenderer, output_dir: str | Path
) -> Path:
    """Save model (safetensors) + renderer (config + font files) + module files + a model card."""
    output_dir = Path(output_dir)
    model.config.auto_map = remote_code_auto_map()
    model.save_pretrained(output_dir)
    renderer.save_pretrained(output_dir)
    here = Path(__file__).resolve().parent
    for name in REMOTE_CODE_MODULES:
        if (here / name).exists():
            shutil.copy2(here / name, output_dir / name)
    if not (output_dir / "README.md").exists():
        write_model_card(output_dir, model)
    return output_dir


def remote_code_auto_map() -> dict[str, str]:
    """auto_map for every registered class, so one repo serves AutoModel, AutoModelFor*, ..."""
    auto_map = {"AutoConfig": "configuration_pixel_m4.PixelM4Config"}
    for cls in PixelM4PreTrainedModel.__subclasses__():
        # setdefault: "AutoModel" stays the encoder (PixelM4Model, defined first) although the
        # parser also registers it, so that a saved parser's own config maps AutoModel to it.
        if cls._auto_class is not None:
            auto_map.setdefault(cls._auto_class, f"modeling_pixel_m4.{cls.__name__}")
    return auto_map


def create_hub_folder(
    output_dir: str | Path,
    preset: str = "tiny",
    seed: int = 0,
    renderer_kwargs: dict | None = None,
    **config_overrides,
) -> Path:
    """A randomly initialised `PixelM4ForPreTraining` + default renderer, saved as a Hub repo."""
    torch.manual_seed(seed)
    model = PixelM4ForPreTraining(PixelM4Config.from_preset(preset, **config_overrides))
    renderer = PixelM4TextRenderer(**(renderer_kwargs or {}))
    return save_hub_folder(model, renderer, output_dir)


def write_model_card(output_dir: Path, model: PixelM4PreTrainedModel) -> None:
    """A minimal Hub card (YAML metadata + loading snippet); training scripts extend it."""
    config = model.config
    size = sum(p.numel() for p in model.parameters())
    (Path(output_dir) / "README.md").write_text(
        f"""---
library_name: transformers
pipeline_tag: feature-extraction
license: apache-2.0
language: [en, hi, uk, zh]
tags: [pixel, vit-mae, pixel-m4, custom_code]
---

# {Path(output_dir).name}

A pixel language model ({type(model).__name__}, {size / 1e6:.1f}M parameters, hidden size
{config.hidden_size}, {config.num_hidden_layers} layers) in the PIXEL-M4 format: text is rendered to
a strip of {config.num_patches} patches of {config.patch_size}x{config.patch_size} px and read by a
ViT-MAE. The renderer and its Noto fonts are in this repository.

```python
from transformers import AutoModel, AutoProcessor

renderer = AutoProcessor.from_pretrained("{Path(output_dir).name}", trust_remote_code=True)
model = AutoModel.from_pretrained("{Path(output_dir).name}", trust_remote_code=True)
inputs = renderer(["Hello world", "नमस्ते दुनिया"], return_tensors="pt")
hidden = model(**inputs).last_hidden_state  # [batch, 1 + {config.num_patches}, {config.hidden_size}]
```
"""
    )


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
