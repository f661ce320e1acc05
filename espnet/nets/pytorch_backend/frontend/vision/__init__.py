"""Vision frontends that wrap pretrained Hugging Face image/video models (issue #5).

Heavy dependencies (transformers) are imported only when a frontend is built."""
