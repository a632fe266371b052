"""pixel-m4: pixel-based language models (PIXEL-M4, pixel fallback) on the Hugging Face stack.

The model files sit at the repository root, as in a Hub model repo; installed, they form this
package. Importing it registers the classes with transformers' Auto* factories.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration_pixel_fallback import PixelFallbackConfig
from .configuration_pixel_m4 import PRESETS, PixelM4Config
from .modeling_pixel_fallback import PixelFallbackEncoder, PixelFallbackForCausalLM
from .modeling_pixel_m4 import (
    PixelM4ForBiaffineParsing,
    PixelM4ForPreTraining,
    PixelM4ForSequenceClassification,
    PixelM4ForTokenClassification,
    PixelM4Model,
)
from .processing_pixel_fallback import PixelFallbackProcessor

AutoConfig.register(PixelM4Config.model_type, PixelM4Config, exist_ok=True)
AutoModel.register(PixelM4Config, PixelM4Model, exist_ok=True)
AutoModelForPreTraining.register(PixelM4Config, PixelM4ForPreTraining, exist_ok=True)
AutoModelForSequenceClassification.register(
    PixelM4Config, PixelM4ForSequenceClassification, exist_ok=True
)
AutoModelForTokenClassification.register(
    PixelM4Config, PixelM4ForTokenClassification, exist_ok=True
)
# The parser has no Auto class of its own: saved parser folders map "AutoModel" to it (remote code).

AutoConfig.register(PixelFallbackConfig.model_type, PixelFallbackConfig, exist_ok=True)
AutoModel.register(PixelFallbackConfig, PixelFallbackEncoder, exist_ok=True)
AutoModelForCausalLM.register(PixelFallbackConfig, PixelFallbackForCausalLM, exist_ok=True)

__all__ = [
    "PRESETS",
    "PixelM4Config",
    "PixelM4Model",
    "PixelM4ForPreTraining",
    "PixelM4ForSequenceClassification",
    "PixelM4ForTokenClassification",
    "PixelM4ForBiaffineParsing",
    "PixelFallbackConfig",
    "PixelFallbackEncoder",
    "PixelFallbackForCausalLM",
    "PixelFallbackProcessor",
]
