"""effalign: data-efficient alignment of language models (a reproduction of arXiv 2411.10545)."""

__version__ = "0.1.0"
