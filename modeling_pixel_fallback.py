"""Pixel fallback for decoder LLMs (Lotz et al. 2025, "Overcoming Vocabulary Constraints with
Pixel-level Fallback").

The words of the source text (all of them by default, as in the paper's main experiments; or
only those the LLM's tokenizer handles badly, e.g. every word with a non-ASCII character) are
rendered as overlapping character bigrams (`word_bigram` mode of the renderer) and encoded by a
small ViT, `PixelFallbackEncoder`, into one vector per word in the LLM's input-embedding space.
`PixelFallbackForCausalLM` wraps any `AutoModelForCausalLM` and puts those vectors in place of
the source's tokens, in text order among the prompt's own token embeddings; the LLM then runs
on `inputs_embeds` as usual.

Packed inputs (built by `PixelFallbackProcessor`): all pixel words of a batch are laid out
back to back in R rows of N patches. `patch_word_ids` [R, N] gives, per patch, the index of its
word among all W pixel words of the batch (in text order, example by example) or -1 for
padding. Positions restart at every word and attention is block diagonal (a patch sees only
its own word), so packing words together gives exactly what encoding each word alone would.
`pixel_word_mask` [B, T] marks the W positions of the LLM sequence the word vectors go to.
"""

import logging
import os

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask, packed_sequence_mask_function
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils import cached_file

from .configuration_pixel_fallback import PixelFallbackConfig
from .layers_pixel import PixelLayer, as_model_pixels

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
# The peft adapter of the LLM goes to a subfolder: an adapter_config.json at the top would make
# AutoModelForCausalLM load the adapter's base model instead of this wrapper.
ADAPTER_SUBFOLDER = "llm_adapter"
ADAPTER_CONFIG_NAME = "adapter_config.json"


def import_peft():
    """peft, needed only for an LLM adapter (stage 2). Imported in a try block: transformers'
    remote-code check skips those, so a folder without an adapter loads without peft."""
    try:
        import peft
    except ImportError as error:
        raise ImportError(
            "the LLM adapter of the pixel fallback (stage 2, llm_adapter/) needs peft: "
            "pip install peft"
        ) from error
    return peft


def positions_within_words(patch_word_ids: torch.Tensor) -> torch.Tensor:
    """[R, N] word index per patch -> [R, N] index of each patch inside its word (0, 1, ...)."""
    index = torch.arange(patch_word_ids.shape[1], device=patch_word_ids.device).expand_as(
        patch_word_ids
    )
    starts_word = torch.ones_like(patch_word_ids, dtype=torch.bool)
    starts_word[:, 1:] = patch_word_ids[:, 1:] != patch_word_ids[:, :-1]
    word_start = torch.where(starts_word, index, 0).cummax(dim=1).values
    return index - word_start


def mean_per_word(hidden: torch.Tensor, patch_word_ids: torch.Tensor, num_words: int):
    """[R, N, D] patch encodings -> [W, D] mean over each word's patches (padding ignored)."""
    flat_hidden, flat_ids = hidden.reshape(-1, hidden.shape[-1]), patch_word_ids.reshape(-1)
    keep = flat_ids >= 0
    flat_hidden, flat_ids = flat_hidden[keep], flat_ids[keep]
    sums = flat_hidden.new_zeros(num_words, hidden.shape[-1]).index_add_(0, flat_ids, flat_hidden)
    counts = torch.bincount(flat_ids, minlength=num_words).clamp(min=1)
    return sums / counts[:, None].to(sums.dtype)


class PixelFallbackEmbeddings(nn.Module):
    """Patch projection (P x P convolution, stride P) + learned positions counted per word."""

    def __init__(self, config: PixelFallbackConfig):
        super().__init__()
        self.config = config
        self.patch_embeddings = nn.Conv2d(
            config.num_channels, config.hidden_size, config.patch_size, stride=config.patch_size
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)

    def forward(self, pixel_values: torch.Tensor, patch_word_ids: torch.Tensor) -> torch.Tensor:
        """[R, C, P, P*N], [R, N] -> [R, N, D]"""
        dtype = self.patch_embeddings.weight.dtype
        patches = self.patch_embeddings(pixel_values.to(dtype)).flatten(2).transpose(1, 2)
        positions = positions_within_words(patch_word_ids)
        if int(positions.max()) >= self.config.max_position_embeddings:
            raise ValueError(
                f"a word has {int(positions.max()) + 1} patches, more than max_position_embeddings="
                f"{self.config.max_position_embeddings}; PixelFallbackProcessor splits longer words"
            )
        return patches + self.position_embeddings(positions)


class PixelFallbackPreTrainedModel(PreTrainedModel):
    config: PixelFallbackConfig
    config_class = PixelFallbackConfig
    base_model_prefix = "fallback"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    _no_split_modules = ["PixelFallbackEmbeddings", "PixelLayer"]
    _supports_sdpa = True
    # Flash attention kernels take no dense mask: words would attend across each other.
    _supports_flash_attn = False
    _supports_attention_backend = True


class PixelFallbackEncoder(PixelFallbackPreTrainedModel):
    """Rendered words in, one LLM input embedding per word out ([W, llm_hidden_size])."""

    def __init__(self, config: PixelFallbackConfig):
        super().__init__(config)
        if config.llm_hidden_size is None:
            raise ValueError(
                "config.llm_hidden_size is None: set it to the hidden size of the LLM's input "
                "embeddings (PixelFallbackForCausalLM fills it in from the LLM)"
            )
        self.embeddings = PixelFallbackEmbeddings(config)
        self.layers = nn.ModuleList(
            PixelLayer(
                config, config.hidden_size, config.num_attention_heads, config.intermediate_size
            )
            for _ in range(config.num_hidden_layers)
        )
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pixel_projector = nn.Linear(config.hidden_size, config.llm_hidden_size)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    def forward(
        self,
        pixel_values: torch.Tensor,
        patch_word_ids: torch.Tensor,
        num_words: int | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """pixel_values [R, C, P, P*N], patch_word_ids [R, N] (-1 = padding) -> [W, llm_hidden].

        `num_words` defaults to max(patch_word_ids) + 1. Other keyword arguments go to the
        attention (transformers' attention kwargs); the output is the word embeddings only."""
        for name in ("output_attentions", "output_hidden_states"):
            if kwargs.pop(name, False):  # asked for, would be silently missing from a tensor
                raise ValueError(
                    f"PixelFallbackEncoder returns one LLM embedding per word, not "
                    f"{name.removeprefix('output_')}: read them with a forward hook on "
                    f"`encoder.layers[i]` (hidden states) or `encoder.layers[i].attention` "
                    "(attention weights, with attn_implementation='eager')"
                )
        check_packed_inputs(self.config, pixel_values, patch_word_ids)
        pixel_values = as_model_pixels(pixel_values, self.config.num_channels)
        if num_words is None:
            num_words = int(patch_word_ids.max()) + 1
        hidden = self.embeddings(pixel_values, patch_word_ids)
        # Block-diagonal mask, built once for all layers: same word id <=> may attend. Padding
        # (-1) forms its own block, so no row is fully masked (no NaN from sdpa).
        mask = create_bidirectional_mask(
            config=self.config,
            inputs_embeds=hidden,
            attention_mask=None,
            and_mask_function=packed_sequence_mask_function(patch_word_ids),
        )
        for layer in self.layers:
            hidden = layer(hidden, mask, **kwargs)
        words = mean_per_word(self.layernorm(hidden), patch_word_ids, num_words)
        return self.pixel_projector(words)


def check_packed_inputs(config: PixelFallbackConfig, pixel_values, patch_word_ids) -> None:
    """Errors a user can act on for the encoder's inputs."""
    size = config.patch_size
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
        raise ValueError(
            "pixel_values must be a tensor (rows, channels, patch_size, patch_size * patches), "
            f"got {type(pixel_values).__name__}; build inputs with PixelFallbackProcessor"
        )
    rows, channels, height, width = pixel_values.shape
    # uint8 is the renderer's compact format: one channel, 255 = white
    expected_channels = config.num_channels if pixel_values.is_floating_point() else 1
    if channels != expected_channels or height != size or width % size:
        raise ValueError(
            f"pixel_values must have shape (rows, {expected_channels}, {size}, {size} * patches), "
            f"got {tuple(pixel_values.shape)}"
        )
    if not isinstance(patch_word_ids, torch.Tensor) or tuple(patch_word_ids.shape) != (
        rows,
        width // size,
    ):
        got = getattr(patch_word_ids, "shape", type(patch_word_ids).__name__)
        raise ValueError(
            f"patch_word_ids must have shape ({rows}, {width // size}) (rows, patches), got {got}"
        )


class PixelFallbackForCausalLM(PixelFallbackPreTrainedModel):
    """Any causal LM + a pixel fallback encoder for the words its vocabulary covers badly.

    Build:  `PixelFallbackForCausalLM(PixelFallbackConfig.from_preset("small"), llm)`
    Train:  stage 1 `freeze_language_model()`; stage 2 `apply_peft(LoraConfig(use_dora=True, ...))`.
    Save:   `save_pretrained(dir)` writes the config (naming the base LLM), the fallback weights
            and peft adapter weights, never the base LLM's own weights.
    Load:   `AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)` loads the base
            LLM from `config.base_model_name_or_path`, then the adapter and fallback weights.
    """

    def __init__(self, config: PixelFallbackConfig, language_model: nn.Module | None = None):
        if language_model is None:
            raise ValueError(
                "PixelFallbackForCausalLM needs `language_model` (an AutoModelForCausalLM); "
                "to load a saved adapter use PixelFallbackForCausalLM.from_pretrained(path)"
            )
        llm_hidden_size = input_embedding_size(language_model)
        if config.llm_hidden_size is None:
            config.llm_hidden_size = llm_hidden_size
        elif config.llm_hidden_size != llm_hidden_size:
            raise ValueError(
                f"config.llm_hidden_size={config.llm_hidden_size} does not match the language "
                f"model's input embedding size {llm_hidden_size}"
            )
        if config.base_model_name_or_path is None:
            name = getattr(language_model, "name_or_path", None) or None
            # a local folder is stored absolute, so the saved adapter finds it from anywhere
            config.base_model_name_or_path = (
                os.path.abspath(name) if name and os.path.isdir(name) else name
            )
        super().__init__(config)
        self.fallback = PixelFallbackEncoder(config)
        self.post_init()
        # Attached after post_init: weight initialisation must never touch the (pretrained) LLM.
        self.language_model = language_model

    # ------------------------------------------------------------------ LLM plumbing
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module | None:
        return self.language_model.get_output_embeddings()

    @property
    def generation_config(self):
        return self.language_model.generation_config

    @generation_config.setter
    def generation_config(self, value):
        # PreTrainedModel.__init__ assigns one; the LLM's own is the one that matters.
        if "language_model" in self._modules:
            self.language_model.generation_config = value

    def freeze_language_model(self) -> None:
        """Stage 1 of the paper: only the fallback encoder (and its projector) learns."""
        self.language_model.requires_grad_(False)
        self.fallback.requires_grad_(True)

    def apply_peft(self, peft_config):
        """Stage 2: wrap the LLM in a peft adapter (DoRA in the paper); the fallback stays
        fully trainable. Only the LLM is wrapped, so target_modules never match the fallback's
        own q/k/v/o projections."""
        self.language_model = import_peft().get_peft_model(self.language_model, peft_config)
        self.fallback.requires_grad_(True)
        return self.language_model

    # ------------------------------------------------------------------ embeddings
    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        patch_word_ids: torch.Tensor | None = None,
        pixel_word_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[B, T] token ids (+ packed pixel words) -> [B, T, H] LLM input embeddings.

        Positions with `pixel_word_mask` get the fallback's word vectors, in row-major order;
        all others the LLM's token embeddings."""
        embeds = self.get_input_embeddings()(input_ids)
        num_pixel_words = 0 if pixel_word_mask is None else int(pixel_word_mask.sum())
        if num_pixel_words == 0:
            return embeds
        if pixel_values is None or patch_word_ids is None:
            raise ValueError(
                "pixel_word_mask marks pixel words but pixel_values / patch_word_ids are missing"
            )
        if pixel_word_mask.shape != input_ids.shape:
            raise ValueError(
                f"pixel_word_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                f"got {tuple(pixel_word_mask.shape)}"
            )
        encoded = int(patch_word_ids.max()) + 1
        if encoded != num_pixel_words:
            raise ValueError(
                f"pixel_word_mask marks {num_pixel_words} pixel words but patch_word_ids "
                f"hold {encoded}"
            )
        words = self.fallback(pixel_values, patch_word_ids, num_words=num_pixel_words)
        mask = pixel_word_mask.bool()[..., None].expand_as(embeds)
        return embeds.masked_scatter(mask, words.to(embeds.dtype))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        patch_word_ids: torch.Tensor | None = None,
        pixel_word_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Runs the LLM on interleaved embeddings; `labels` [B, T] (-100 = no loss; the
        processor sets it on everything but the target) gives the usual shifted LM loss."""
        inputs_embeds = self.embed_inputs(input_ids, pixel_values, patch_word_ids, pixel_word_mask)
        return self.language_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, **kwargs
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        patch_word_ids: torch.Tensor | None = None,
        pixel_word_mask: torch.Tensor | None = None,
        **generate_kwargs,
    ) -> torch.Tensor:
        """LLM `generate` from the interleaved prompt embeddings; returns only the new tokens
        [B, new] (the prompt is given as embeddings). Pad prompts on the left for batches."""
        inputs_embeds = self.embed_inputs(input_ids, pixel_values, patch_word_ids, pixel_word_mask)
        return self.language_model.generate(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, **generate_kwargs
        )

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, save_directory, state_dict=None, **kwargs):
        """Config (+ module files for trust_remote_code), fallback weights, peft adapter
        (in `llm_adapter/`).

        The base LLM is referenced by `config.base_model_name_or_path`, not copied."""
        if not self.config.base_model_name_or_path:
            raise ValueError(
                "config.base_model_name_or_path is empty: load the language model with "
                "from_pretrained(name_or_path) or set it, so the adapter can find its LLM again"
            )
        peft_wrapped = hasattr(self.language_model, "peft_config")
        if not peft_wrapped and any(p.requires_grad for p in self.language_model.parameters()):
            logger.warning(
                "the language model has trainable weights outside a peft adapter; they are not "
                "saved (the base LLM is loaded from %s)",
                self.config.base_model_name_or_path,
            )
        if state_dict is None:
            state_dict = self.state_dict()
        # config (naming the base LLM), remote-code modules and the fallback's weights alone
        fallback_weights = {
            name: tensor
            for name, tensor in state_dict.items()
            if not name.startswith("language_model.")
        }
        super().save_pretrained(save_directory, state_dict=fallback_weights, **kwargs)
        if peft_wrapped:
            self.language_model.save_pretrained(os.path.join(save_directory, ADAPTER_SUBFOLDER))

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path,
        *model_args,
        config: PixelFallbackConfig | None = None,
        language_model: nn.Module | None = None,
        is_trainable: bool = False,
        **kwargs,
    ):
        """Loads the base LLM (from `config.base_model_name_or_path` unless `language_model`
        is given; further kwargs such as `dtype` or `device_map` go to its from_pretrained),
        the peft adapter if one was saved, and the fallback weights. `is_trainable=False`
        returns a frozen model in eval mode; True keeps fallback and adapter trainable."""
        if model_args:
            raise TypeError(f"unexpected positional arguments {model_args}")
        hub_kwargs = {
            key: kwargs.pop(key)
            for key in ("cache_dir", "force_download", "local_files_only", "token", "revision")
            if key in kwargs
        }
        kwargs.pop("trust_remote_code", None)
        kwargs.pop("adapter_kwargs", None)  # AutoModel's peft lookup, meant for plain models
        if config is None:
            config = PixelFallbackConfig.from_pretrained(
                pretrained_model_name_or_path, **hub_kwargs
            )
        if language_model is None:
            if not config.base_model_name_or_path:
                raise ValueError(
                    f"{pretrained_model_name_or_path} names no base LLM "
                    "(config.base_model_name_or_path); pass language_model="
                )
            language_model = AutoModelForCausalLM.from_pretrained(
                config.base_model_name_or_path, **hub_kwargs, **kwargs
            )
        adapter_config = cached_file(
            pretrained_model_name_or_path,
            ADAPTER_CONFIG_NAME,
            subfolder=ADAPTER_SUBFOLDER,
            _raise_exceptions_for_missing_entries=False,
            **hub_kwargs,
        )
        if adapter_config is not None:
            language_model = import_peft().PeftModel.from_pretrained(
                language_model,
                str(pretrained_model_name_or_path),
                subfolder=ADAPTER_SUBFOLDER,
                is_trainable=is_trainable,
            )
        model = cls(config, language_model)
        weights = load_file(cached_file(pretrained_model_name_or_path, WEIGHTS_NAME, **hub_kwargs))
        missing, unexpected = model.load_state_dict(weights, strict=False)
        missing = [name for name in missing if not name.startswith("language_model.")]
        if missing or unexpected:
            raise ValueError(
                f"{pretrained_model_name_or_path}/{WEIGHTS_NAME} does not fit this config: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        dtype = next(language_model.parameters()).dtype
        device = language_model.get_input_embeddings().weight.device
        model.fallback.to(device=device, dtype=dtype)
        if not is_trainable:  # as peft does: a loaded adapter is frozen unless asked otherwise
            model.requires_grad_(False)
        return model.train(is_trainable)


def generate_text(
    model: PixelFallbackForCausalLM,
    processor,
    texts: list[str],
    templates: list[str] | str | None = None,
    batch_size: int = 8,
    **generate_kwargs,
) -> list[str]:
    """Generated continuations (e.g. translations) of `texts` in their prompt templates,
    decoded without special tokens; batches are left-padded for generation."""
    from tqdm.auto import tqdm

    if templates is None or isinstance(templates, str):
        templates = [templates] * len(texts)
    device = model.get_input_embeddings().weight.device
    outputs = []
    for start in tqdm(range(0, len(texts), batch_size), desc="generating", leave=False):
        batch = processor(
            texts[start : start + batch_size],
            template=templates[start : start + batch_size],
            padding_side="left",
        ).to(device)
        generated = model.generate(**batch, **generate_kwargs)
        outputs += [
            text.strip() for text in processor.batch_decode(generated, skip_special_tokens=True)
        ]
    return outputs


def input_embedding_size(language_model) -> int:
    """Width of the LLM's token embeddings; clear errors for models that have none."""
    get_embeddings = getattr(language_model, "get_input_embeddings", None)
    if not callable(get_embeddings):
        raise TypeError(
            f"language_model must be a causal LM with get_input_embeddings() "
            f"(AutoModelForCausalLM), got {type(language_model).__name__}"
        )
    try:
        embeddings = get_embeddings()
    except NotImplementedError:
        embeddings = None
    weight = getattr(embeddings, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise TypeError(
            f"language_model ({type(language_model).__name__}).get_input_embeddings() must return "
            f"a token embedding layer, got {type(embeddings).__name__}"
        )
    return weight.shape[1]


PixelFallbackEncoder.register_for_auto_class("AutoModel")
PixelFallbackForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = [
    "PixelFallbackPreTrainedModel",
    "PixelFallbackEncoder",
    "PixelFallbackForCausalLM",
    "positions_within_words",
    "mean_per_word",
    "generate_text",
]
