"""migrate: reproduce, audit and measure a CUDA model's port to Gaudi through GPU Migration."""

__version__ = "0.1.0"
