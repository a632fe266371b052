"""Configuration of the pixel fallback encoder (Lotz et al. 2025, "Overcoming Vocabulary Constraints
with Pixel-level Fallback"), the pixel encoder that feeds a decoder LLM."""

from huggingface_hub.dataclasses import strict

from .layers_pixel import CheckedConfig, check_heads, check_positive_ints, check_probabilities

# Fallback encoder sizes by name. "default" is the fallback paper's main model (Lotz et al. 2025,
# §3.2: "92M", 4 layers, d=1536, 16 heads), "small" its BERT+PIXELS variant (§5 and footnote 8:
# "24M", 4 layers, d=768, 12 heads); "test" is for unit tests and the embedded CPU demo. The
# paper gives no MLP width: 4096 / 2048 are the widths that give its counts (91.6M / 23.8M
# without `pixel_projector`, whose size depends on the LLM); a 4x MLP would give 116.8M / 30.1M.
FALLBACK_PRESETS: dict[str, dict] = {
    "test": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
    "small": dict(hidden_size=768, num_hidden_layers=4, num_attention_heads=12, intermediate_size=2048),
    "default": {},
}  # fmt: skip


@strict
class PixelFallbackConfig(CheckedConfig):
    r"""
    Pixel fallback encoder for a language model (Lotz et al. 2025, "Overcoming Vocabulary
    Constraints with Pixel-level Fallback").

    Words the LLM's tokenizer handles badly are rendered as overlapping character bigrams in
    `patch_size` x `patch_size` patches (renderer mode `word_bigram`). A pre-LN ViT encodes the
    patches of all words of a sequence packed into one row, positions restarting at every word
    (learned 1-D positions, `max_position_embeddings` = most patches one word may have) and
    attention restricted to the patches of the same word. Each word's patch encodings are
    averaged and `pixel_projector` maps them to `llm_hidden_size`, the width of the LLM's input
    embeddings. `base_model_name_or_path` names the wrapped LLM (Hub id or local folder); it is
    filled in from the LLM when the adapter is built and is what `from_pretrained` loads.
    """

    model_type = "pixel_fallback"

    hidden_size: int = 1536
    num_hidden_layers: int = 4
    num_attention_heads: int = 16
    intermediate_size: int = 4096  # see FALLBACK_PRESETS
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    patch_size: int = 24
    num_channels: int = 3
    qkv_bias: bool = True
    max_position_embeddings: int = 529
    llm_hidden_size: int | None = None
    base_model_name_or_path: str | None = None

    def check_values(self) -> None:
        """Raises ValueError naming the first invalid field."""
        check_heads("", self.hidden_size, self.num_attention_heads)
        check_positive_ints(
            self, "num_hidden_layers", "intermediate_size", "patch_size", "num_channels",
            "max_position_embeddings",
        )  # fmt: skip
        check_probabilities(self, "hidden_dropout_prob", "attention_probs_dropout_prob")
        if self.llm_hidden_size is not None and (
            isinstance(self.llm_hidden_size, bool) or self.llm_hidden_size <= 0
        ):
            raise ValueError(
                f"llm_hidden_size must be a positive int, got {self.llm_hidden_size!r}"
            )

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "PixelFallbackConfig":
        """`PixelFallbackConfig.from_preset("small")`; presets: test, small, default (the paper's)."""
        if name not in FALLBACK_PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(FALLBACK_PRESETS)}")
        return cls(**{**FALLBACK_PRESETS[name], **overrides})


PixelFallbackConfig.register_for_auto_class()

__all__ = ["PixelFallbackConfig", "FALLBACK_PRESETS"]
