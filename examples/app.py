"""Interactive PIXEL-M4 demo (gradio): type text -> rendered strip, masked input, MAE reconstruction.

The Hub's inference widget cannot run custom code; this is the interactive alternative.

    pip install "pixel-m4[demo]"
    python examples/app.py --model_name_or_path path/or/hub-id     # then open the printed URL

Without --model_name_or_path a randomly initialised tiny model is used (the page works, the
reconstructions are noise). The functions below do not need gradio; only `build_demo` does.
"""

import argparse
import math

import numpy as np
import torch
from transformers import AutoModelForPreTraining, AutoProcessor

from pixel_m4.configuration_pixel_m4 import PixelM4Config
from pixel_m4.modeling_pixel_m4 import PixelM4ForPreTraining, patchify, span_mask, unpatchify
from pixel_m4.rendering_pixel_m4 import PixelM4TextRenderer, strip_to_grid

MASKED_GREY = 0.6  # how hidden patches are shown in the masked view


def load(model_name_or_path: str | None = None, seed: int = 0):
    """(PixelM4ForPreTraining, renderer): from a folder / Hub id, or random tiny ones."""
    if model_name_or_path is None:
        torch.manual_seed(seed)
        return PixelM4ForPreTraining(
            PixelM4Config.from_preset("tiny")
        ).eval(), PixelM4TextRenderer()
    renderer = AutoProcessor.from_pretrained(model_name_or_path, trust_remote_code=True)
    model = AutoModelForPreTraining.from_pretrained(model_name_or_path, trust_remote_code=True)
    return model.eval(), renderer


def to_image(pixels: torch.Tensor) -> np.ndarray:
    """[3, P, P*L] floats in [0, 1] -> uint8 [P*rows, P*grid] grayscale grid (23 x 23 for 529)."""
    grid = math.isqrt(pixels.shape[-1] // pixels.shape[-2])  # 23 for 529 patches
    strip = (pixels[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return strip_to_grid(strip, grid=grid)


def render(text: str, renderer) -> tuple[np.ndarray, str]:
    """The rendered text as an image, and a one-line summary (patches, dropped words, missing glyphs)."""
    inputs = renderer(text, return_tensors="pt")
    summary = (
        f"{int(inputs['num_patches'][0])} patches, {int(inputs['overflow'][0])} words cut, "
        f"{int(inputs['missing_glyphs'][0])} missing glyphs"
    )
    return to_image(inputs["pixel_values"][0]), summary


@torch.no_grad()
def reconstruct(text: str, model, renderer, mask_ratio: float = 0.25, seed: int = 0):
    """Hide `mask_ratio` of the text patches in spans, let the MAE fill them in.

    Returns (original, masked, reconstruction) images and the loss on the hidden patches.
    """
    if not 0 < mask_ratio < 1:
        raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
    inputs = renderer(text, return_tensors="pt")
    pixels, attention_mask = inputs["pixel_values"], inputs["attention_mask"]
    generator = torch.Generator().manual_seed(seed)
    patch_mask = span_mask(
        attention_mask,
        mask_ratio,
        model.config.span_cumulative_weights,
        generator,
        spacing=model.config.span_spacing,
    )
    output = model(pixels, attention_mask, patch_mask=patch_mask)
    filled = model.reconstruct(pixels, output.logits, output.mask)
    patches = patchify(pixels, model.config.patch_size)
    hidden = output.mask.bool()[..., None]
    masked = unpatchify(
        torch.where(hidden, torch.full_like(patches, MASKED_GREY), patches),
        model.config.patch_size,
        model.config.num_channels,
    )
    return to_image(pixels[0]), to_image(masked[0]), to_image(filled[0]), float(output.loss)


def build_demo(model, renderer):
    """The gradio Blocks app (not launched)."""
    import gradio as gr

    def run(text, mask_ratio, seed):
        original, masked, filled, loss = reconstruct(text, model, renderer, mask_ratio, int(seed))
        return original, masked, filled, f"reconstruction loss on hidden patches: {loss:.4f}"

    with gr.Blocks(title="PIXEL-M4") as demo:
        gr.Markdown("# PIXEL-M4: language modelling with pixels\nType text in any script.")
        text = gr.Textbox(
            value="Pixels, not tokens. पिक्सेल, टोकन नहीं। 像素，而不是词元。", label="text"
        )
        with gr.Row():
            ratio = gr.Slider(0.05, 0.9, value=0.25, step=0.05, label="mask ratio")
            seed = gr.Number(value=0, precision=0, label="mask seed")
        button = gr.Button("Render and reconstruct")
        with gr.Row():
            images = [gr.Image(label=name) for name in ("rendered", "masked", "reconstruction")]
        info = gr.Textbox(label="loss")
        button.click(run, [text, ratio, seed], [*images, info])
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="gradio demo: text -> rendered strip + MAE reconstruction"
    )
    parser.add_argument(
        "--model_name_or_path",
        default=None,
        help="pixel_m4 pretraining model (folder or Hub id); default: a random tiny model",
    )
    parser.add_argument("--port", type=int, default=7860, help="port of the local server")
    parser.add_argument("--share", action="store_true", help="also create a public gradio link")
    args = parser.parse_args(argv)
    model, renderer = load(args.model_name_or_path)
    build_demo(model, renderer).launch(server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
