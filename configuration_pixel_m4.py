"""Configuration of PIXEL-M4, a ViT-MAE that reads rendered text (Kesen et al.; Rust et al.).

Names follow transformers' `ViTMAEConfig` so that original PIXEL checkpoints map field for field.
"""

from huggingface_hub.dataclasses import strict

from .layers_pixel import CheckedConfig, check_heads, check_positive_ints, check_probabilities

# Span lengths 1..6 with the PIXEL paper's cumulative weights: P(1..4) = 0.2 each, P(5) = P(6) = 0.1.
PAPER_SPAN_WEIGHTS = (0.2, 0.4, 0.6, 0.8, 0.9, 1.0)

# Model sizes by name. "base" is the paper's; the others are for laptops, CPUs and tests.
PRESETS: dict[str, dict] = {
    "test": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
        decoder_intermediate_size=64,
    ),
    "tiny": dict(
        hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=768,
        decoder_hidden_size=128, decoder_num_hidden_layers=2, decoder_num_attention_heads=4,
        decoder_intermediate_size=512,
    ),
    "small": dict(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
        decoder_hidden_size=256, decoder_num_hidden_layers=4, decoder_num_attention_heads=8,
        decoder_intermediate_size=1024,
    ),
    "base": {},
}  # fmt: skip


@strict
class PixelM4Config(CheckedConfig):
    r"""
    Encoder (ViT) and pretraining decoder (MAE) of a pixel language model.

    The input is one strip of rendered text, `image_size = (patch_size, patch_size * num_patches)`,
    i.e. 16 x 8464 px = 529 patches for the paper's models. Positions are fixed 2-D sin-cos
    embeddings on a sqrt(num_patches) square grid, as in the released checkpoints.

    Defaults are the published ones (PIXEL-M4 paper + ilkerkesen/pixel-m4 code); see
    docs/fidelity.md for each choice and its options.

    Pretraining masks `mask_ratio` of each strip's attended patches (text + end patch), in spans
    of 1..`span_max_length` patches drawn with `span_cumulative_weights` and kept `span_spacing`
    patches apart ("span": as many unmasked patches on each side as the span is long; PIXEL's
    `SpanMaskingGenerator`), with `masking="span"`; or uniformly (`masking="random"`).
    `norm_pix_loss` normalises each target patch by its own mean and variance.

    Dropout: `hidden_dropout_prob` and `attention_probs_dropout_prob` (0.1, PIXELConfig and
    Table 7); task models also drop out after the embeddings (the published ViT does) and in the
    head (`classifier_dropout`, default: `hidden_dropout_prob`, as the published heads).
    `trainable_position_embeddings`: None = as published (frozen sin-cos in pretraining,
    trained when fine-tuning); True / False force it.

    Task heads: `pooling_mode` is how sequence classification pools patches: `mean` (published
    default: Linear + GELU + LayerNorm + dropout on every patch, then the mean over attended
    patches), `max` (same projection, then the max) or `cls` (the ViT pooler, dense + tanh, on
    the CLS vector). `word_pooling` is how token classification turns a word's patches into one
    vector (`first` patch, the paper's choice, or `mean`). `parser_variant` picks the biaffine
    parser: `published` (biaffine scores on the encoder's word vectors, ROOT = pooler output) or
    `dozat_manning` (MLPs of `biaffine_arc_size` / `biaffine_rel_size` before the biaffine
    products, CLS as ROOT, impossible heads masked); `parser_decoding` is `greedy` (published:
    argmax head per word) or `mst` (Chu-Liu-Edmonds, one root).
    """

    model_type = "pixel_m4"

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    image_size: list[int] | tuple[int, int] = (16, 8464)
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True

    decoder_hidden_size: int = 512
    decoder_num_hidden_layers: int = 8
    decoder_num_attention_heads: int = 16
    decoder_intermediate_size: int = 2048
    decoder_layer_norm_eps: float = 1e-5

    mask_ratio: float = 0.25
    masking: str = "span"
    span_max_length: int = 6
    span_cumulative_weights: list[float] | tuple[float, ...] = PAPER_SPAN_WEIGHTS
    span_spacing: int | str = "span"
    norm_pix_loss: bool = True
    trainable_position_embeddings: bool | None = None

    pooling_mode: str = "mean"
    classifier_dropout: float | None = None
    word_pooling: str = "first"
    parser_variant: str = "published"
    parser_decoding: str = "greedy"
    biaffine_arc_size: int = 500
    biaffine_rel_size: int = 100

    def check_values(self) -> None:
        """Raises ValueError naming the first invalid field."""
        check_positive_ints(
            self,
            "num_hidden_layers", "intermediate_size", "patch_size", "num_channels",
            "decoder_num_hidden_layers", "decoder_intermediate_size", "span_max_length",
        )  # fmt: skip
        check_probabilities(self, "hidden_dropout_prob", "attention_probs_dropout_prob")
        if self.classifier_dropout is not None:  # None: the heads use hidden_dropout_prob
            check_probabilities(self, "classifier_dropout")
        check_heads("", self.hidden_size, self.num_attention_heads)
        check_heads("decoder_", self.decoder_hidden_size, self.decoder_num_attention_heads)
        height, width = self.image_size
        if height != self.patch_size or width % self.patch_size:
            raise ValueError(
                f"image_size must be (patch_size, patch_size * num_patches), got image_size="
                f"{tuple(self.image_size)} with patch_size={self.patch_size}"
            )
        grid = int(round(self.num_patches**0.5))
        if grid * grid != self.num_patches:
            raise ValueError(
                f"the number of patches ({self.num_patches}) must be a square (positions live on a "
                f"grid x grid plane, 23 x 23 = 529 in the paper); change image_size"
            )
        if self.hidden_size % 4 or self.decoder_hidden_size % 4:
            raise ValueError(
                "hidden_size and decoder_hidden_size must be multiples of 4 (2-D sin-cos)"
            )
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.masking not in ("span", "random"):
            raise ValueError(f"masking must be 'span' or 'random', got {self.masking!r}")
        weights = list(self.span_cumulative_weights)
        if len(weights) != self.span_max_length or weights != sorted(weights) or weights[-1] != 1:
            raise ValueError(
                "span_cumulative_weights must be non-decreasing, end at 1.0 and have "
                f"span_max_length={self.span_max_length} entries, got {weights}"
            )
        if self.span_spacing != "span" and (
            isinstance(self.span_spacing, bool)
            or not isinstance(self.span_spacing, int)
            or self.span_spacing < 0
        ):
            raise ValueError(
                f"span_spacing must be 'span' or an int >= 0, got {self.span_spacing!r}"
            )
        if self.pooling_mode not in ("mean", "cls", "max"):
            raise ValueError(
                f"pooling_mode must be 'mean', 'cls' or 'max', got {self.pooling_mode!r}"
            )
        if self.word_pooling not in ("first", "mean"):
            raise ValueError(f"word_pooling must be 'first' or 'mean', got {self.word_pooling!r}")
        if self.parser_variant not in ("published", "dozat_manning"):
            raise ValueError(
                f"parser_variant must be 'published' or 'dozat_manning', got {self.parser_variant!r}"
            )
        if self.parser_decoding not in ("greedy", "mst"):
            raise ValueError(
                f"parser_decoding must be 'greedy' or 'mst', got {self.parser_decoding!r}"
            )
        if self.biaffine_arc_size <= 0 or self.biaffine_rel_size <= 0:
            raise ValueError(
                "biaffine_arc_size and biaffine_rel_size must be positive, got "
                f"{self.biaffine_arc_size} and {self.biaffine_rel_size}"
            )

    @property
    def num_patches(self) -> int:
        return self.image_size[1] // self.patch_size

    @property
    def head_dropout(self) -> float:
        """Dropout of the task heads: `classifier_dropout`, else `hidden_dropout_prob` (the
        published heads use hidden_dropout_prob)."""
        if self.classifier_dropout is None:
            return self.hidden_dropout_prob
        return self.classifier_dropout

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "PixelM4Config":
        """`PixelM4Config.from_preset("tiny")`; presets: test, tiny, small, base (the paper's)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


PixelM4Config.register_for_auto_class()

__all__ = ["PixelM4Config", "PRESETS", "PAPER_SPAN_WEIGHTS"]
