"""PIXEL-M4's task-side processing.

`AutoProcessor` on a PIXEL-M4 folder returns the renderer
(`rendering_pixel_m4.PixelM4TextRenderer`); this module holds the task-side processing on top of
it, shared by the task collators (`pixel_m4.tools.task_data`) and the shipped pipelines / tree
decoding: batches rendered for a model of a given strip length (`render_batch`, `pad_to_patches`), words -> patch spans
(`token_patch_spans`), word labels aligned to patches (`align_word_labels`). The pixel fallback's
processor is in processing_pixel_fallback.py.
"""

from collections.abc import Sequence

import torch

from .rendering_pixel_m4 import PixelM4TextRenderer, clean_words

IGNORE = -100  # transformers' ignore index: labels left out of the loss and the metrics


def token_patch_spans(
    tokens: Sequence[str], rendered_spans: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Patch span of each token, from the renderer's spans of the words of " ".join(tokens).

    The renderer splits text on whitespace, so a token holding spaces (Vietnamese syllables,
    "New York" as one token) is several rendered words: its span runs from its first word's
    start to its last word's end. Tokens lost to truncation get the empty span (0, 0).
    """
    spans, word = [], 0
    for index, token in enumerate(tokens):
        count = len(clean_words(token))
        if count == 0:
            raise ValueError(
                f"token {index} ({token!r}) has nothing to render (only whitespace / control "
                "characters); remove it or replace it with a visible placeholder"
            )
        if word + count <= len(rendered_spans):
            spans.append((rendered_spans[word][0], rendered_spans[word + count - 1][1]))
        else:
            spans.append((0, 0))
        word += count
    return spans


def pad_to_patches(batch: dict, num_patches: int) -> dict:
    """Pad a rendered batch (renderer max_seq_length S <= model num_patches L) with white,
    unattended patches, so that a renderer truncating at 256 patches feeds a 529-patch model."""
    pixel_values, attention_mask = batch["pixel_values"], batch["attention_mask"]
    missing = num_patches - attention_mask.shape[1]
    if missing < 0:
        raise ValueError(
            f"the renderer makes {attention_mask.shape[1]} patches but the model reads only "
            f"{num_patches}: lower the renderer's max_seq_length (--max_seq_length)"
        )
    if missing:
        patch = pixel_values.shape[2]
        white = pixel_values.new_full(
            (*pixel_values.shape[:3], missing * patch),
            255 if pixel_values.dtype == torch.uint8 else 1,
        )
        pixel_values = torch.cat([pixel_values, white], 3)
        attention_mask = torch.cat(
            [attention_mask, attention_mask.new_zeros(attention_mask.shape[0], missing)], 1
        )
    return {"pixel_values": pixel_values, "attention_mask": attention_mask}


def render_batch(
    renderer: PixelM4TextRenderer,
    texts: list[str] | list[list[str]],
    pairs: list[str] | None,
    num_patches: int,
    padding: str,
    pad_to_multiple_of: int | None,
    **kwargs,
):
    """Render for a model of `num_patches` patches. "longest" pads to the batch's longest text
    (the model reads any width up to num_patches, with the same outputs); "max_length" pads
    every strip to the model's full width, as the published fine-tuning did."""
    rendered = renderer(
        texts,
        pairs,
        return_tensors="pt",
        padding=padding,
        pad_to_multiple_of=pad_to_multiple_of,
        **kwargs,
    )
    inputs = (
        pad_to_patches(rendered, num_patches)
        if padding == "max_length"
        else {
            "pixel_values": rendered["pixel_values"],
            "attention_mask": rendered["attention_mask"],
        }
    )
    return rendered, inputs


def check_lengths(renderer: PixelM4TextRenderer, num_patches: int) -> None:
    if renderer.max_seq_length > num_patches:
        raise ValueError(
            f"--max_seq_length ({renderer.max_seq_length} patches) exceeds the model's "
            f"{num_patches} patches: give at most {num_patches}"
        )


def align_word_labels(
    features: list[dict],
    word_patch_spans: Sequence[Sequence[tuple[int, int]]],
    label_fields: Sequence[str],
    head_fields: Sequence[str] = (),
    score_truncated_words: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Examples {"tokens", <label fields>: one label per token} and the renderer's word spans
    of each -> word_spans [B, W, 2] and each label field padded to [B, W] with -100.

    Words without patches (truncated) get -100 labels. `head_fields` hold head indices
    (0 = root, i = i-th word): arcs to a truncated head cannot be scored and become -100 too,
    and so do the labels of the other fields at those words. `score_truncated_words=True`
    keeps all labels instead (the published parser data, pixel/data/datasets/ud_dataset.py: a
    truncated word is still scored, from a zero vector).
    """
    num_words = max(len(feature["tokens"]) for feature in features)
    word_spans = torch.zeros(len(features), num_words, 2, dtype=torch.long)
    labels = {
        name: torch.full((len(features), num_words), IGNORE, dtype=torch.long)
        for name in label_fields
    }
    for row, (feature, spans) in enumerate(zip(features, word_patch_spans, strict=True)):
        tokens = feature["tokens"]
        check_word_labels(feature, label_fields, head_fields)
        aligned = torch.tensor(token_patch_spans(tokens, spans), dtype=torch.long)
        word_spans[row, : len(tokens)] = aligned
        present = aligned[:, 1] > aligned[:, 0]
        head_present = torch.cat([torch.ones(1, dtype=torch.bool), present])  # ROOT first
        if score_truncated_words:
            scorable = torch.ones_like(present)
        else:
            scorable = present.clone()
            for name in head_fields:
                scorable &= head_present[torch.tensor(feature[name])]
        for name in label_fields:
            labels[name][row, : len(tokens)] = torch.tensor(feature[name]).masked_fill(
                ~scorable, IGNORE
            )
    return word_spans, labels


def check_word_labels(feature: dict, label_fields: Sequence[str], head_fields: Sequence[str]):
    """One label per token; heads point at words of the sentence (0..n)."""
    tokens = feature["tokens"]
    if not tokens:
        raise ValueError("an example has no tokens; drop empty sentences from the data")
    for name in label_fields:
        if len(feature[name]) != len(tokens):
            raise ValueError(
                f"example has {len(tokens)} tokens but {len(feature[name])} {name}: {tokens[:8]}..."
            )
    for name in head_fields:
        if not all(0 <= head <= len(tokens) for head in feature[name]):
            raise ValueError(
                f"{name} must be heads in 0..{len(tokens)} (0 = root) for a sentence of "
                f"{len(tokens)} words, got {feature[name]}"
            )
