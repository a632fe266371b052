"""pixel-m4: pixel-based language models (PIXEL-M4, pixel fallback) on the Hugging Face stack.

The model files sit at the repository root, as in a Hub model repo; installed, they form this
package. Importing it registers the classes with transformers' Auto* factories.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForPreTraining

from .configuration_pixel_m4 import PRESETS, PixelM4Config
from .modeling_pixel_m4 import PixelM4ForPreTraining, PixelM4Model

AutoConfig.register(PixelM4Config.model_type, PixelM4Config, exist_ok=True)
AutoModel.register(PixelM4Config, PixelM4Model, exist_ok=True)
AutoModelForPreTraining.register(PixelM4Config, PixelM4ForPreTraining, exist_ok=True)

# Pixel fallback for causal LMs (issue 6)
from .configuration_pixel_m4 import PixelFallbackConfig  # noqa: E402
from .modeling_pixel_fallback import PixelFallbackEncoder, PixelFallbackForCausalLM  # noqa: E402
from .processing_pixel_m4 import PixelFallbackProcessor  # noqa: E402

AutoConfig.register(PixelFallbackConfig.model_type, PixelFallbackConfig, exist_ok=True)
AutoModel.register(PixelFallbackConfig, PixelFallbackEncoder, exist_ok=True)
AutoModelForCausalLM.register(PixelFallbackConfig, PixelFallbackForCausalLM, exist_ok=True)

__all__ = ["PRESETS", "PixelM4Config", "PixelM4Model", "PixelM4ForPreTraining"]
__all__ += [
    "PixelFallbackConfig",
    "PixelFallbackEncoder",
    "PixelFallbackForCausalLM",
    "PixelFallbackProcessor",
]
