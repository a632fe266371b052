"""Processors: text -> model inputs.

`PixelFallbackProcessor` (pixel fallback, Lotz et al. 2025) holds an LLM's tokenizer and a
`word_bigram` renderer. It splits the text into whitespace words and decides per word: words
the rule keeps (ASCII by default) are tokenized as usual, the others become one pixel-word
position each in the LLM sequence and are rendered for `PixelFallbackEncoder`.
"""

import json
import logging
import os
import re
from collections.abc import Callable

import numpy as np
import torch
from transformers import AutoTokenizer, BatchFeature

from .rendering_pixel_m4 import OUTPUT_FORMATS, PixelM4TextRenderer, clean_words

logger = logging.getLogger(__name__)

FALLBACK_PROCESSOR_CONFIG = "fallback_processor_config.json"
PIXEL_WORD_RULES = ("non_ascii", "all")
TEXT_FIELD = "{text}"


def is_pixel_word(word: str, rule: str | Callable[[str], bool]) -> bool:
    """`non_ascii`: words with any non-ASCII character; `all`: every word; or a predicate."""
    if callable(rule):
        return bool(rule(word))
    if rule == "non_ascii":
        return not word.isascii()
    if rule == "all":
        return True
    raise ValueError(
        f"pixel_word_rule must be one of {PIXEL_WORD_RULES} or a callable, got {rule!r}"
    )


class PixelFallbackProcessor:
    """Tokenizer + `word_bigram` renderer for `PixelFallbackForCausalLM`.

    Args:
        tokenizer: the LLM's tokenizer (from AutoTokenizer).
        renderer: a `PixelM4TextRenderer` in `word_bigram` mode; None makes the paper's
            (24 x 24 px patches, 10 pt, 120 DPI, 529 patches per row).
        pixel_word_rule: which words of the text go to the fallback: "non_ascii" (default),
            "all", or a callable `word -> bool`.

    Only the words of `text` are routed; the `template` around it (prompt, chat template) is
    always tokenized. Text between pixel words is tokenized as it stands in the full string
    (the spaces right before a pixel word are dropped: the pixel word stands for them), so a
    text without pixel words gives exactly `tokenizer(template.format(text=text))`.
    Pixel words are packed into rows of at most `renderer.max_seq_length - 1` patches; a word
    longer than that is split into pieces that fit (a warning says so), each piece one
    position in the LLM sequence.
    """

    def __init__(
        self,
        tokenizer,
        renderer: PixelM4TextRenderer | None = None,
        pixel_word_rule: str | Callable[[str], bool] = "non_ascii",
    ):
        if renderer is None:
            renderer = PixelM4TextRenderer(render_mode="word_bigram")
        if renderer.render_mode != "word_bigram":
            raise ValueError(
                f"renderer must use render_mode='word_bigram', got {renderer.render_mode!r}"
            )
        if renderer.max_seq_length < 2:
            raise ValueError("renderer.max_seq_length must be >= 2 (one word patch + end patch)")
        if not callable(pixel_word_rule) and pixel_word_rule not in PIXEL_WORD_RULES:
            raise ValueError(
                f"pixel_word_rule must be one of {PIXEL_WORD_RULES} or a callable, "
                f"got {pixel_word_rule!r}"
            )
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos_token: targets need one to end on")
        self.tokenizer = tokenizer
        self.renderer = renderer
        self.pixel_word_rule = pixel_word_rule
        # Token id behind pixel-word positions; its embedding is replaced, any valid id works.
        self.placeholder_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )

    @property
    def patch_budget(self) -> int:
        """Patches per packed row available to words (the renderer's end patch excluded)."""
        return self.renderer.max_seq_length - 1

    # ------------------------------------------------------------------ segmentation
    def split_pieces(self, text: str, template: str | None = None) -> list[tuple[str, str]]:
        """The prompt as ("text", str) and ("pixel", word) pieces in order.

        Adjacent text stays one piece; pixel words come cleaned (control characters dropped,
        as the renderer does) and split to fit a row."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if template is None:
            template = TEXT_FIELD
        if template.count(TEXT_FIELD) != 1:
            raise ValueError(f"template must contain {TEXT_FIELD!r} exactly once, got {template!r}")
        prefix, _, suffix = template.partition(TEXT_FIELD)
        full, start = prefix + text + suffix, len(prefix)
        pieces, cursor = [], 0
        for match in re.finditer(r"\S+", text):
            if not is_pixel_word(match.group(), self.pixel_word_rule):
                continue
            # spaces before a word belong to its first token in BPE vocabularies ("Ġword"):
            # the pixel word stands for them; newlines and tabs stay tokens
            before = full[cursor : start + match.start()].rstrip(" ")
            if before:
                pieces.append(("text", before))
            for word in clean_words(match.group()):
                pieces.extend(("pixel", piece) for piece in self._fit_word(word))
            cursor = start + match.end()
        if full[cursor:] or not pieces:
            pieces.append(("text", full[cursor:]))
        return pieces

    def _fit_word(self, word: str) -> list[str]:
        """A word, or pieces of it that each fit one row. Pieces overlap by one character so
        no bigram is lost."""
        if self._fits(word):
            return [word]
        pieces = []
        while not self._fits(word):
            low, high = 2, len(word) - 1  # longest prefix that fits, by bisection
            while low < high:
                middle = (low + high + 1) // 2
                low, high = (middle, high) if self._fits(word[:middle]) else (low, middle - 1)
            if not self._fits(word[:low]):
                raise ValueError(
                    f"cannot render two characters of {word[:8]!r} in {self.patch_budget} patches"
                )
            pieces.append(word[:low])
            word = word[low - 1 :]
        logger.warning(
            "a word longer than one row (%d patches) was split into %d pieces",
            self.patch_budget,
            len(pieces) + 1,
        )
        return [*pieces, word]

    def _fits(self, word: str) -> bool:
        return self.renderer.render(word).overflow == 0

    def _encode_pieces(
        self, pieces: list[tuple[str, str]]
    ) -> tuple[list[int], list[bool], list[str]]:
        """Token ids (placeholders at pixel words), pixel-word flags, and the pixel words.

        Special tokens (e.g. BOS) come with the first text piece, or alone before a leading
        pixel word."""
        ids, is_pixel, words = [], [], []
        if pieces[0][0] == "pixel":
            pieces = [("text", ""), *pieces]
        for index, (kind, value) in enumerate(pieces):
            if kind == "pixel":
                ids.append(self.placeholder_id)
                is_pixel.append(True)
                words.append(value)
                continue
            tokens = self.tokenizer(value, add_special_tokens=index == 0)["input_ids"]
            ids += tokens
            is_pixel += [False] * len(tokens)
        return ids, is_pixel, words

    # ------------------------------------------------------------------ batches
    def __call__(
        self,
        text: str | list[str],
        template: str | list[str] | None = None,
        target: str | list[str] | None = None,
        padding_side: str = "right",
        return_tensors: str = "pt",
        output_format: str = "float32",
    ) -> BatchFeature:
        """Model inputs for a batch of texts.

        Args:
            text: source text(s); their words are routed by `pixel_word_rule`.
            template: prompt around each text with one "{text}" field, always tokenized,
                e.g. "Translate from Hindi to English:\\n{text}\\nEnglish:" or the output of
                `tokenizer.apply_chat_template(..., tokenize=False)` on a message holding
                "{text}"; one for all texts or one per text. None: the text alone.
            target: text(s) the model should produce after the prompt (tokenized, EOS added);
                gives `labels` with -100 on every prompt position. The target is appended as is,
                so start it with a space if the tokenizer expects one.
            padding_side: "right" for training, "left" for batched generation.
            return_tensors: "pt" only.
            output_format: "float32" ([R, 3, P, P*N] in [0, 1]) or "uint8" (the renderer's
                compact format [R, 1, P, P*N], 255 = white; the encoder converts it).

        Returns a BatchFeature with input_ids, attention_mask, pixel_word_mask [B, T]
        (+ labels [B, T]) and, when any word goes to pixels, pixel_values [R, C, P, P*N] and
        patch_word_ids [R, N].
        """
        if return_tensors != "pt":
            raise ValueError(f"return_tensors must be 'pt', got {return_tensors!r}")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(
                f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}"
            )
        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise ValueError("text must be a non-empty str or list of str")
        empty = [
            index for index, one in enumerate(texts) if isinstance(one, str) and not one.strip()
        ]
        if empty:
            raise ValueError(f"text must not be empty or whitespace (examples {empty[:5]})")
        templates = (
            [template] * len(texts)
            if template is None or isinstance(template, str)
            else list(template)
        )
        if len(templates) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(templates)} templates")
        targets = None
        if target is not None:
            targets = [target] if isinstance(target, str) else list(target)
            if len(targets) != len(texts):
                raise ValueError(f"got {len(texts)} texts but {len(targets)} targets")

        sequences, flags, labels, words = [], [], [], []
        for index, one in enumerate(texts):
            ids, is_pixel, example_words = self._encode_pieces(
                self.split_pieces(one, templates[index])
            )
            example_labels = [-100] * len(ids)
            if targets is not None:
                target_ids = self.tokenizer(targets[index], add_special_tokens=False)["input_ids"]
                target_ids = [*target_ids, self.tokenizer.eos_token_id]
                ids, is_pixel = ids + target_ids, is_pixel + [False] * len(target_ids)
                example_labels += target_ids
            sequences.append(ids)
            flags.append(is_pixel)
            labels.append(example_labels)
            words += example_words

        length = max(len(ids) for ids in sequences)

        def pad(rows: list[list], value) -> torch.Tensor:
            padded = [
                [value] * (length - len(row)) + row
                if padding_side == "left"
                else row + [value] * (length - len(row))
                for row in rows
            ]
            return torch.tensor(padded)

        data = {
            "input_ids": pad(sequences, self.placeholder_id),
            "attention_mask": pad([[1] * len(ids) for ids in sequences], 0),
            "pixel_word_mask": pad(flags, False),
        }
        if targets is not None:
            data["labels"] = pad(labels, -100)
        if words:
            data["pixel_values"], data["patch_word_ids"] = self.render_words(words, output_format)
        return BatchFeature(data=data)

    def render_words(
        self, words: list[str], output_format: str = "float32"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Packs words (each fitting one row) into rows: pixel_values [R, 3, P, P*N] in [0, 1]
        (or uint8 [R, 1, P, P*N] for output_format="uint8") and patch_word_ids [R, N] (index
        into `words`, -1 = padding)."""
        rows, spans, first = [], [], 0
        while first < len(words):
            rendered = self.renderer.render(" ".join(words[first:]))
            if not rendered.word_patch_spans:
                raise ValueError(f"the word {words[first][:20]!r} does not fit one row")
            rows.append(rendered.pixels)
            spans.append([(first + k, span) for k, span in enumerate(rendered.word_patch_spans)])
            first += len(rendered.word_patch_spans)
        patch = self.renderer.pixels_per_patch
        width = max(row_spans[-1][1][1] for row_spans in spans)  # patches of the longest row
        word_ids = np.full((len(rows), width), -1, dtype=np.int64)
        for row, row_spans in enumerate(spans):
            for word, (start, end) in row_spans:
                word_ids[row, start:end] = word
        pixels = np.stack([row[:, : width * patch] for row in rows])[:, None]
        if output_format == "float32":
            pixels = np.repeat(pixels.astype(np.float32) / 255.0, 3, axis=1)  # RGB convention
        return torch.from_numpy(pixels), torch.from_numpy(word_ids)

    def count_inputs(self, text: str) -> tuple[int, int]:
        """(LLM tokens for `text` alone, LLM positions with the fallback), no special tokens;
        their ratio is the paper's compression ratio."""
        plain = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        with_fallback = 0
        for kind, value in self.split_pieces(text):
            if kind == "pixel":
                with_fallback += 1
            else:
                with_fallback += len(self.tokenizer(value, add_special_tokens=False)["input_ids"])
        return plain, with_fallback

    def batch_decode(self, token_ids, **kwargs) -> list[str]:
        return self.tokenizer.batch_decode(token_ids, **kwargs)

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, save_directory) -> None:
        """Tokenizer files, renderer config + fonts, and the rule (not a callable's code)."""
        if callable(self.pixel_word_rule):
            raise ValueError(
                "a callable pixel_word_rule cannot be saved; pass it again to "
                "PixelFallbackProcessor.from_pretrained(..., pixel_word_rule=...)"
            )
        os.makedirs(save_directory, exist_ok=True)
        self.tokenizer.save_pretrained(save_directory)
        self.renderer.save_pretrained(save_directory)
        config = {"processor_class": type(self).__name__, "pixel_word_rule": self.pixel_word_rule}
        with open(os.path.join(save_directory, FALLBACK_PROCESSOR_CONFIG), "w") as writer:
            json.dump(config, writer, indent=2)

    @classmethod
    def from_pretrained(cls, path, pixel_word_rule=None, **kwargs) -> "PixelFallbackProcessor":
        """Loads what `save_pretrained` wrote (a local folder or Hub repo)."""
        from transformers.utils import cached_file

        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        renderer = PixelM4TextRenderer.from_pretrained(path, **kwargs)
        config_file = cached_file(path, FALLBACK_PROCESSOR_CONFIG, **kwargs)
        with open(config_file) as reader:
            config = json.load(reader)
        rule = pixel_word_rule if pixel_word_rule is not None else config["pixel_word_rule"]
        return cls(tokenizer, renderer, rule)


__all__ = ["PixelFallbackProcessor", "is_pixel_word", "PIXEL_WORD_RULES"]
