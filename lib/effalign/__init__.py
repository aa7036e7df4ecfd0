"""effalign: data-efficient alignment of language models (a reproduction of arXiv 2411.10545)."""

import os as _os
import sys as _sys

# never report usage to the Hugging Face hub (a user's own setting is kept)
if "HF_HUB_DISABLE_TELEMETRY" not in _os.environ:
    _os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    if "huggingface_hub.constants" in _sys.modules:  # imported before effalign: tell it too
        _sys.modules["huggingface_hub.constants"].HF_HUB_DISABLE_TELEMETRY = True

__version__ = "0.1.0"
