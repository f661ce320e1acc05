"""Audio frontends that wrap pretrained Hugging Face speech models (issue #5).

Heavy dependencies (transformers) are imported only when a frontend is built."""
