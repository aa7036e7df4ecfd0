"""effalign: data-efficient alignment of language models (a reproduction of arXiv 2411.10545)."""

import os as _os

# never report usage to the Hugging Face hub (a user's own setting is kept)
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
