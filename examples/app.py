"""Interactive PIXEL-M4 demo (gradio): type text -> rendered strip, masked input, MAE reconstruction.

The Hub's inference widget cannot run custom code; this is the interactive alternative.

    pip install "pixel-m4[demo]"
    python examples/app.py --model_name_or_path path/or/hub-id     # then open the printed URL
    python examples/app.py --write_space my-space --model_name_or_path user/pixel-m4-model

The strips are cropped to the patches in use (text + end patch), laid out in rows of
`PATCHES_PER_ROW` patches and scaled up without smoothing; the reconstruction shows each hidden
patch's loss as a red overlay. `--write_space` writes a Hugging Face Space folder (app.py,
requirements.txt, packages.txt for the system Pango) that loads the model from the Hub: the app
itself imports only torch, transformers, numpy and gradio (the model's own remote code does the
rest). Without --model_name_or_path a randomly initialised tiny model is used (needs the pixel_m4
package; the page works, the reconstructions are noise). Only `build_demo` needs gradio.
"""

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForPreTraining, AutoProcessor

MASKED_GREY = 0.6  # how hidden patches are shown in the masked view
PATCHES_PER_ROW = 20  # strip layout: 20 patches of 16 px, 960 px wide once scaled up
SCALE = 3  # nearest-neighbour upscaling: crisp pixels
LOSS_RED = (230, 40, 40)  # overlay colour of the per-patch loss
SPACE_REQUIREMENTS = ["torch", "transformers>=5.17", "cffi", "gradio>=5"]
SPACE_PACKAGES = ["libpango-1.0-0", "libpangocairo-1.0-0", "libpangoft2-1.0-0", "libcairo2"]


def load(model_name_or_path: str | None = None, seed: int = 0):
    """(pretraining model, renderer): from a folder / Hub id (its own remote code), or random tiny
    ones from the installed pixel_m4 package."""
    if model_name_or_path is None:
        from pixel_m4.configuration_pixel_m4 import PixelM4Config
        from pixel_m4.modeling_pixel_m4 import PixelM4ForPreTraining
        from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer

        torch.manual_seed(seed)
        config = PixelM4Config.from_preset("tiny")
        return PixelM4ForPreTraining(config).eval(), PixelM4TextRenderer()
    renderer = AutoProcessor.from_pretrained(model_name_or_path, trust_remote_code=True)
    model = AutoModelForPreTraining.from_pretrained(model_name_or_path, trust_remote_code=True)
    return model.eval(), renderer


def modeling_module(model):
    """The module that defines the model (the package's or the folder's remote code): patchify,
    unpatchify and span_mask come from there, so the app needs no pixel_m4 import."""
    return sys.modules[type(model).__module__]


def strip_rows(strip: np.ndarray, num_patches: int, per_row: int = PATCHES_PER_ROW) -> np.ndarray:
    """[..., P, P*L] strip -> [..., P*rows, P*per_row]: the first `num_patches` patches in rows of
    `per_row`, the last row padded with white (255)."""
    patch = strip.shape[-2]
    rows = max(1, -(-num_patches // per_row))
    used = strip[..., : num_patches * patch]
    padded = np.full((*strip.shape[:-1], rows * per_row * patch), 255, dtype=strip.dtype)
    padded[..., : used.shape[-1]] = used
    lead = padded.shape[:-2]
    cells = padded.reshape(*lead, patch, rows, per_row * patch)
    order = (*range(len(lead)), len(lead) + 1, len(lead), len(lead) + 2)
    return cells.transpose(order).reshape(*lead, rows * patch, per_row * patch)


def upscale(image: np.ndarray, factor: int = SCALE) -> np.ndarray:
    """Nearest-neighbour scaling of the first two axes: each pixel becomes factor x factor."""
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def to_rgb(pixels: torch.Tensor, num_patches: int) -> np.ndarray:
    """[C, P, P*L] floats in [0, 1] -> uint8 RGB [P*rows*SCALE, P*per_row*SCALE, 3]."""
    gray = (pixels[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return np.repeat(upscale(strip_rows(gray, num_patches))[..., None], 3, axis=2)


def render(text: str, renderer) -> tuple[np.ndarray, str]:
    """The rendered text as an image, and a one-line summary (patches, dropped words, missing glyphs)."""
    inputs = renderer(text, return_tensors="pt")
    num_patches = int(inputs["num_patches"][0])
    summary = (
        f"{num_patches} patches, {int(inputs['overflow'][0])} words cut, "
        f"{int(inputs['missing_glyphs'][0])} missing glyphs"
    )
    return to_rgb(inputs["pixel_values"][0], num_patches), summary


def loss_overlay(image: np.ndarray, patch_loss: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Tint each hidden patch red in proportion to its loss (the largest: half red)."""
    size = 16 * SCALE
    rows, cols = image.shape[0] // size, image.shape[1] // size
    strength = np.zeros(rows * cols)
    count = min(len(patch_loss), rows * cols)
    patch_loss, hidden = patch_loss[:count], hidden[:count]
    top = max(float(patch_loss[hidden].max(initial=0.0)), 1e-12)
    strength[:count] = np.where(hidden, 0.15 + 0.35 * patch_loss / top, 0.0)
    alpha = upscale(strength.reshape(rows, cols), size)[..., None]
    return (image * (1 - alpha) + np.array(LOSS_RED) * alpha).round().astype(np.uint8)


@torch.no_grad()
def reconstruct(text: str, model, renderer, mask_ratio: float = 0.25, seed: int = 0):
    """Hide `mask_ratio` of the text patches in spans, let the MAE fill them in.

    Returns (original, masked, reconstruction with per-patch loss overlay) RGB images cropped to
    the patches in use, and the loss on the hidden patches.
    """
    if not 0 < mask_ratio < 1:
        raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
    modeling = modeling_module(model)
    inputs = renderer(text, return_tensors="pt")
    pixels, attention_mask = inputs["pixel_values"], inputs["attention_mask"]
    num_patches = int(inputs["num_patches"][0])
    generator = torch.Generator().manual_seed(seed)
    patch_mask = modeling.span_mask(
        attention_mask,
        mask_ratio,
        model.config.span_cumulative_weights,
        generator,
        spacing=model.config.span_spacing,
    )
    output = model(pixels, attention_mask, patch_mask=patch_mask)
    filled = model.reconstruct(pixels, output.logits, output.mask)
    size, channels = model.config.patch_size, model.config.num_channels
    patches = modeling.patchify(pixels, size)
    hidden = output.mask.bool()[0]
    masked = modeling.unpatchify(
        torch.where(hidden[None, :, None], torch.full_like(patches, MASKED_GREY), patches),
        size,
        channels,
    )
    patch_loss = (modeling.patchify(filled, size) - patches).pow(2).mean(-1)[0].numpy()
    overlay = loss_overlay(to_rgb(filled[0], num_patches), patch_loss, hidden.numpy())
    return (
        to_rgb(pixels[0], num_patches),
        to_rgb(masked[0], num_patches),
        overlay,
        float(output.loss),
    )


def build_demo(model, renderer):
    """The gradio Blocks app (not launched)."""
    import gradio as gr

    def run(text, mask_ratio, seed):
        original, masked, filled, loss = reconstruct(text, model, renderer, mask_ratio, int(seed))
        _, summary = render(text, renderer)
        return original, masked, filled, f"{summary}; loss on the hidden patches {loss:.4f}"

    example = "Pixels, not tokens. पिक्सेल, टोकन नहीं। 像素，而不是词元。 Пікселі, а не токени."
    with gr.Blocks(title="PIXEL-M4") as demo:
        gr.Markdown(
            "# PIXEL-M4: language modelling with pixels\n"
            "Type text in any script: it is rendered into 16 x 16 px patches (bigrams), a span "
            "of patches is hidden and the masked autoencoder fills them in. Red: the loss of "
            "each hidden patch."
        )
        text = gr.Textbox(value=example, label="text", lines=2)
        with gr.Row():
            ratio = gr.Slider(0.05, 0.9, value=0.25, step=0.05, label="mask ratio")
            seed = gr.Number(value=0, precision=0, label="mask seed")
            button = gr.Button("Render and reconstruct", variant="primary")
        # the example's outputs are part of the page: it shows results before any click
        *first_images, first_info = run(example, 0.25, 0)
        images = []
        for value, name in zip(
            first_images,
            ("Rendered", "Masked", "Reconstruction (red: loss of each hidden patch)"),
            strict=True,
        ):
            gr.Markdown(f"**{name}**")  # a heading, not a label badge over the text
            images.append(
                gr.Image(
                    value=value,
                    show_label=False,
                    interactive=False,
                    format="png",
                    height=max(value.shape[0], 3 * 16 * SCALE) + 8,
                    buttons=["download"],
                )  # fmt: skip
            )
        info = gr.Textbox(value=first_info, label="summary")
        button.click(run, [text, ratio, seed], [*images, info])
    return demo


SPACE_README = """---
title: PIXEL-M4 demo
emoji: 🖼️
sdk: gradio
app_file: app.py
pinned: false
---

Interactive demo of the pixel language model `{model}`: text -> rendered strip, masked input,
MAE reconstruction with per-patch loss.
"""


def write_space(folder: str | Path, model_name_or_path: str) -> Path:
    """A Hugging Face Space folder: this app (loading `model_name_or_path` from the Hub with its
    remote code), requirements.txt and packages.txt (the system Pango and Cairo)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(__file__, folder / "app.py")
    (folder / "requirements.txt").write_text("\n".join(SPACE_REQUIREMENTS) + "\n")
    (folder / "packages.txt").write_text("\n".join(SPACE_PACKAGES) + "\n")
    (folder / "README.md").write_text(SPACE_README.format(model=model_name_or_path))
    (folder / "model.txt").write_text(model_name_or_path + "\n")
    return folder


def default_model() -> str | None:
    """In a Space folder written by `write_space`, the model it was written for."""
    path = Path(__file__).with_name("model.txt")
    return path.read_text().strip() if path.is_file() else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="gradio demo: text -> rendered strip + MAE reconstruction"
    )
    parser.add_argument(
        "--model_name_or_path",
        default=default_model(),
        help="pixel_m4 pretraining model (folder or Hub id); default: a random tiny model",
    )
    parser.add_argument("--port", type=int, default=7860, help="port of the local server")
    parser.add_argument("--share", action="store_true", help="also create a public gradio link")
    parser.add_argument(
        "--write_space", default=None, help="write a Space folder here instead of serving"
    )
    args = parser.parse_args(argv)
    if args.write_space:
        if not args.model_name_or_path:
            parser.error("--write_space needs --model_name_or_path (the Hub id the Space loads)")
        print(f"wrote {write_space(args.write_space, args.model_name_or_path)}")
        return
    model, renderer = load(args.model_name_or_path)
    build_demo(model, renderer).launch(server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
