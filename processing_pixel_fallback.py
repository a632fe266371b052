"""The pixel fallback's processor: text -> inputs of `PixelFallbackForCausalLM`.

`PixelFallbackProcessor` (pixel fallback, Lotz et al. 2025) holds an LLM's tokenizer and a
`word_bigram` renderer. It splits the text into words (whitespace, then a dictionary segmenter
for scripts written without spaces, Thai by default) and decides per word: by default every
word becomes one pixel-word position in the LLM sequence, rendered for `PixelFallbackEncoder`
(the paper's main setting); the `non_ascii` rule keeps ASCII words tokenized as usual.
"""

import functools
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoTokenizer, BatchFeature, ProcessorMixin
from transformers.dynamic_module_utils import custom_object_save
from transformers.utils import PROCESSOR_NAME, cached_file

from .rendering_pixel_m4 import OUTPUT_FORMATS, PixelM4TextRenderer, clean_words

logger = logging.getLogger(__name__)

# Settings file of folders saved before the processor became a ProcessorMixin (they are read as
# a fallback; new folders write transformers' processor_config.json, which AutoProcessor reads).
LEGACY_PROCESSOR_CONFIG = "fallback_processor_config.json"
# "all" first: the paper's main experiments (Lotz et al. 2025, §3, Tables 1-3) encode the whole
# source with the fallback; "non_ascii" is its mixed-modality variant (§4, Table 6).
PIXEL_WORD_RULES = ("all", "non_ascii")
TEXT_FIELD = "{text}"
# Paper, Table 10: maximum source and target length 256.
MAX_SOURCE_LENGTH = 256
MAX_TARGET_LENGTH = 256


@dataclass(frozen=True)
class WordSegmenter:
    """A dictionary word segmenter for a script written without spaces (an optional package)."""

    script: str  # regex character class of the characters that call for this segmenter
    package: str  # the PyPI package (and module) it needs
    extra: str  # the pixel-m4 extra that installs it


# Thai: the paper word-tokenizes Thai with DeepCut (§3, footnote 2), a CNN whose package pins
# old TensorFlow/Keras versions; PyThaiNLP's dictionary maximal-matching segmenter ("newmm") is
# pure Python, ships its word list in the wheel (no download at run time), and is PyThaiNLP's
# default. Chinese (jieba) and Japanese (janome) are offered for the scripts the paper did not
# cover; both ship their dictionaries too. They are mutually exclusive (both claim Han).
WORD_SEGMENTERS = {
    "thai": WordSegmenter("[\u0e00-\u0e7f]", "pythainlp", "thai"),
    "chinese": WordSegmenter(
        "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]",
        "jieba",
        "chinese",
    ),
    "japanese": WordSegmenter(
        "[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]",
        "janome",
        "japanese",
    ),
}
DEFAULT_WORD_SEGMENTER = "thai"  # the paper's setting
# What processor_config.json holds besides the class name and auto_map.
SAVED_SETTINGS = ("pixel_word_rule", "word_segmenter", "max_source_length", "max_target_length")
# A setting missing from a saved file means what the code that saved it did: the first version
# saved only the rule and had whitespace words and no truncation.
SETTINGS_BEFORE_THEY_WERE_SAVED = {
    "pixel_word_rule": "non_ascii",
    "word_segmenter": "none",
    "max_source_length": None,
    "max_target_length": None,
}


def parse_word_segmenter(value: str | None) -> tuple[str, ...]:
    """'thai', 'thai,chinese', '' / 'none' / None (whitespace only) -> segmenter names."""
    if value is None:
        return ()
    if not isinstance(value, str):
        raise TypeError(f"word_segmenter must be a str or None, got {type(value).__name__}")
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if names == ("none",):
        return ()
    unknown = [name for name in names if name not in WORD_SEGMENTERS]
    if unknown:
        raise ValueError(
            f"word_segmenter: unknown {unknown}; use a comma-separated list of "
            f"{sorted(WORD_SEGMENTERS)}, or 'none' for whitespace words only"
        )
    if {"chinese", "japanese"} <= set(names):
        raise ValueError(
            "word_segmenter: choose 'chinese' or 'japanese', not both (both segment Han text)"
        )
    return names


@functools.cache
def load_word_segmenter(name: str) -> Callable[[str], list[str]]:
    """The segmenting function of `name` (imports its package once): str -> list of words."""
    segmenter = WORD_SEGMENTERS[name]
    try:
        if name == "thai":
            from pythainlp.tokenize import word_tokenize

            return functools.partial(word_tokenize, engine="newmm", keep_whitespace=False)
        if name == "chinese":
            import jieba

            jieba.setLogLevel(logging.WARNING)
            return functools.partial(jieba.lcut, HMM=True)
        from janome.tokenizer import Tokenizer

        return functools.partial(Tokenizer(wakati=True).tokenize, wakati=True)
    except ImportError as error:
        raise ImportError(
            f"word_segmenter={name!r} needs the package {segmenter.package!r} to split "
            f"{name.capitalize()} text into words: pip install {segmenter.package} "
            f"(or pip install 'pixel-m4[{segmenter.extra}]'); word_segmenter='none' keeps "
            "whitespace words only"
        ) from error


def segment_word(word: str, segmenters: tuple[str, ...]) -> list[tuple[int, int]]:
    """(start, end) spans of the words inside one whitespace-free `word`: split by the first
    segmenter whose script occurs in it, else the word itself."""
    for name in segmenters:
        if re.search(WORD_SEGMENTERS[name].script, word):
            spans, cursor = [], 0
            for piece in load_word_segmenter(name)(word):
                piece = piece.strip()
                if not piece:
                    continue
                start = word.find(piece, cursor)
                if start < 0:
                    raise RuntimeError(
                        f"the {name} segmenter returned {piece!r}, not a part of {word!r}"
                    )
                spans.append((start, start + len(piece)))
                cursor = start + len(piece)
            return spans
    return [(0, len(word))]


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


class PixelFallbackProcessor(ProcessorMixin):
    """Tokenizer + `word_bigram` renderer for `PixelFallbackForCausalLM`.

    A transformers `ProcessorMixin` registered for `AutoProcessor`: a saved folder loads with
    `AutoProcessor.from_pretrained(folder, trust_remote_code=True)`. Its one sub-processor in
    transformers' sense is the tokenizer; the renderer saves itself (config + font files).

    Args:
        tokenizer: the LLM's tokenizer (from AutoTokenizer).
        renderer: a `PixelM4TextRenderer` in `word_bigram` mode; None makes the paper's
            (24 x 24 px patches, 10 pt, 120 DPI, 529 patches per row).
        pixel_word_rule: which words of the text go to the fallback: "all" (default, the
            paper's main setting), "non_ascii" (ASCII words stay tokens, the paper's §4
            mixed-modality variant), or a callable `word -> bool`.
        word_segmenter: dictionary segmenters for scripts written without spaces, applied to
            each whitespace word that contains their script: "thai" (default, as the paper;
            needs `pythainlp`), "chinese" (`jieba`), "japanese" (`janome`), a comma-separated
            combination, or "none" (whitespace words only).
        max_source_length: most LLM positions the source text takes (a pixel word counts one,
            a tokenized word its tokens); later words are dropped. None: no limit. Paper: 256.
        max_target_length: most target tokens (EOS included: a cut target has none). None: no
            limit. Paper: 256.

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
        pixel_word_rule: str | Callable[[str], bool] = "all",
        word_segmenter: str | None = DEFAULT_WORD_SEGMENTER,
        max_source_length: int | None = MAX_SOURCE_LENGTH,
        max_target_length: int | None = MAX_TARGET_LENGTH,
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
        for name, limit in (
            ("max_source_length", max_source_length),
            ("max_target_length", max_target_length),
        ):
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
                raise TypeError(f"{name} must be an int or None, got {limit!r}")
            if limit is not None and limit < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {limit}")
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos_token: targets need one to end on")
        super().__init__(tokenizer)  # checks it is a transformers tokenizer
        self.renderer = renderer
        self.pixel_word_rule = pixel_word_rule
        self.segmenters = parse_word_segmenter(word_segmenter)
        self.max_source_length = max_source_length
        self.max_target_length = max_target_length
        # Token id behind pixel-word positions; its embedding is replaced, any valid id works.
        self.placeholder_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )

    @property
    def word_segmenter(self) -> str:
        """The segmenter setting as saved: comma-separated names, or "none"."""
        return ",".join(self.segmenters) or "none"

    @property
    def patch_budget(self) -> int:
        """Patches per packed row available to words (the renderer's end patch excluded)."""
        return self.renderer.max_seq_length - 1

    # ------------------------------------------------------------------ segmentation
    def word_spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of each word of `text`: whitespace-separated, then split by the word
        segmenters where their script occurs."""
        spans = []
        for match in re.finditer(r"\S+", text):
            spans += [
                (match.start() + start, match.start() + end)
                for start, end in segment_word(match.group(), self.segmenters)
            ]
        return spans

    def split_pieces(self, text: str, template: str | None = None) -> list[tuple[str, str]]:
        """The prompt as ("text", str) and ("pixel", word) pieces in order.

        Adjacent text stays one piece; pixel words come cleaned (control characters dropped,
        as the renderer does) and split to fit a row. The source is cut after the last word
        that fits `max_source_length`."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if template is None:
            template = TEXT_FIELD
        if template.count(TEXT_FIELD) != 1:
            raise ValueError(f"template must contain {TEXT_FIELD!r} exactly once, got {template!r}")
        words, used = [], 0  # (start, end, pixel pieces or None for a tokenized word)
        for start, end in self.word_spans(text):
            word = text[start:end]
            pixels = None
            if is_pixel_word(word, self.pixel_word_rule):
                pixels = [piece for part in clean_words(word) for piece in self._fit_word(part)]
            if self.max_source_length is not None:
                used += (
                    len(pixels)
                    if pixels is not None
                    else len(self.tokenizer(word, add_special_tokens=False)["input_ids"])
                )
                if used > self.max_source_length:
                    text = text[: words[-1][1]] if words else ""
                    break
            words.append((start, end, pixels))
        prefix, _, suffix = template.partition(TEXT_FIELD)
        full, offset = prefix + text + suffix, len(prefix)
        pieces, cursor = [], 0
        for start, end, pixels in words:
            if pixels is None:
                continue
            # spaces before a word belong to its first token in BPE vocabularies ("Ġword"):
            # the pixel word stands for them; newlines and tabs stay tokens
            before = full[cursor : offset + start].rstrip(" ")
            if before:
                pieces.append(("text", before))
            pieces.extend(("pixel", piece) for piece in pixels)
            cursor = offset + end
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
                target_ids = [*target_ids, self.tokenizer.eos_token_id][: self.max_target_length]
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
    def to_dict(self) -> dict:
        """Class name and settings: what processor_config.json holds besides `auto_map`."""
        rule = self.pixel_word_rule
        config = {"processor_class": type(self).__name__}
        config.update({name: getattr(self, name) for name in SAVED_SETTINGS})
        config["pixel_word_rule"] = rule if isinstance(rule, str) else repr(rule)
        return config

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs) -> list[str]:
        """Tokenizer files, renderer config + fonts, processor_config.json with the settings (the
        rule by name: not a callable's code) and `auto_map`, and the remote code (this module
        and the renderer's) so that AutoProcessor loads the folder with trust_remote_code.
        `push_to_hub=True` then uploads the folder's files (kwargs: repo_id, token, ...)."""
        if callable(self.pixel_word_rule):
            raise ValueError(
                "a callable pixel_word_rule cannot be saved; pass it again to "
                "PixelFallbackProcessor.from_pretrained(..., pixel_word_rule=...)"
            )
        save_directory = str(save_directory)
        os.makedirs(save_directory, exist_ok=True)
        self.tokenizer.save_pretrained(save_directory)
        self.renderer.save_pretrained(save_directory)
        config = self.to_dict()
        if self._auto_class is not None:
            custom_object_save(self, save_directory, config=config)  # adds config["auto_map"]
        output_file = os.path.join(save_directory, PROCESSOR_NAME)
        with open(output_file, "w") as writer:
            json.dump(config, writer, indent=2)
        if push_to_hub:
            repo_id = kwargs.pop(
                "repo_id", save_directory.rstrip(os.path.sep).split(os.path.sep)[-1]
            )
            self.push_to_hub(repo_id, **kwargs)
        return [output_file]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "PixelFallbackProcessor":
        """Loads what `save_pretrained` wrote (a local folder or Hub repo), also folders saved
        with the older fallback_processor_config.json. The saved settings (pixel_word_rule,
        word_segmenter, max_source_length, max_target_length) can be overridden by keyword;
        other kwargs go to the tokenizer / file lookups."""
        path = pretrained_model_name_or_path
        overrides = {name: kwargs.pop(name) for name in SAVED_SETTINGS if name in kwargs}
        for private in ("_from_auto", "_from_pipeline"):
            kwargs.pop(private, None)  # AutoProcessor / pipeline pass these on
        # trust_remote_code stays: AutoTokenizer reads the folder's config.json, whose
        # auto_map names the fallback model's remote code
        hub_kwargs = {
            key: kwargs[key]
            for key in ("cache_dir", "force_download", "local_files_only", "token", "revision")
            if key in kwargs
        }
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        renderer = PixelM4TextRenderer.from_pretrained(path, **kwargs)
        config_file = None
        for name in (PROCESSOR_NAME, LEGACY_PROCESSOR_CONFIG):
            config_file = cached_file(
                path, name, _raise_exceptions_for_missing_entries=False, **hub_kwargs
            )
            if config_file is not None:
                break
        if config_file is None:
            raise OSError(
                f"{path} has no {PROCESSOR_NAME} (nor {LEGACY_PROCESSOR_CONFIG}): not a folder "
                "saved by PixelFallbackProcessor.save_pretrained"
            )
        with open(config_file) as reader:
            config = json.load(reader)
        settings = {
            name: config.get(name, SETTINGS_BEFORE_THEY_WERE_SAVED[name]) for name in SAVED_SETTINGS
        }
        return cls(tokenizer, renderer, **{**settings, **overrides})


PixelFallbackProcessor.register_for_auto_class()


__all__ = [
    "PixelFallbackProcessor",
    "is_pixel_word",
    "PIXEL_WORD_RULES",
    "WORD_SEGMENTERS",
    "load_word_segmenter",
]
