"""QLoRA (4-bit NF4 base weights + LoRA adapters) for the pretrained components."""
