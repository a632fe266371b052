"""pixel-m4: pixel-based language models (PIXEL-M4, pixel fallback) on the Hugging Face stack.

The model files sit at the repository root, as in a Hub model repo; installed, they form this
package. Importing it registers the classes with transformers' Auto* factories.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration_pixel_m4 import PRESETS, PixelM4Config
from .modeling_pixel_m4 import (
    PixelM4ForBiaffineParsing,
    PixelM4ForPreTraining,
    PixelM4ForSequenceClassification,
    PixelM4ForTokenClassification,
    PixelM4Model,
)

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

__all__ = [
    "PRESETS",
    "PixelM4Config",
    "PixelM4Model",
    "PixelM4ForPreTraining",
    "PixelM4ForSequenceClassification",
    "PixelM4ForTokenClassification",
    "PixelM4ForBiaffineParsing",
]
