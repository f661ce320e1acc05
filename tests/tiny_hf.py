"""Tiny random Hugging Face models and tokenizers built from configs and saved with
``save_pretrained`` (tests load them back offline; no Hub access)."""

import torch
import transformers

TEXTS = ["bin blue at one now", "lay green by two soon", "place red in three again", "set white with four please",
         "hello world this is a test of the tokenizer"]
LLAMA_SPECIALS = ["<s>", "</s>", "<pad>"]
WHISPER_SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]


def text_tokenizer(specials, extra):
    """A BPE tokenizer (Metaspace) trained here on :data:`TEXTS` in both cases."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    alphabet = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'")
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>"] + specials, initial_alphabet=alphabet)
    tok.train_from_iterator(TEXTS + [t.upper() for t in TEXTS], trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", **extra)


def save_tiny_llama(path: str, seed: int = 0, hidden: int = 32, init_std: float = 0.02) -> str:
    """A 2-layer LLaMA (hidden ``hidden``, weights N(0, ``init_std``)) + tokenizer in ``path``.
    A frozen random ``lm_head`` with the usual 0.02 spread cannot produce peaked output
    distributions, so adapter-only training (QLoRA) tests use a larger ``init_std``."""
    tok = text_tokenizer(LLAMA_SPECIALS, dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>"))
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                                   num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                   max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                                   eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, initializer_range=init_std)
    transformers.LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_tiny_vit(path: str, seed: int = 0) -> str:
    """A 1-layer ViT (32x32 images, 8x8 patches, hidden 32, no pooler) in ``path``."""
    torch.manual_seed(seed)
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=64)
    transformers.ViTModel(cfg, add_pooling_layer=False).save_pretrained(path)
    return path


def save_tiny_whisper(path: str, seed: int = 0) -> str:
    """A multilingual-style 1+1-layer Whisper (d_model 32, a 4 s input window, weights
    N(0, 0.3)) + tokenizer + feature extractor + a generation config with the language /
    task / no-timestamps tokens Whisper's ``generate`` needs, in ``path``."""
    tok = text_tokenizer(WHISPER_SPECIALS, dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                                pad_token="<|endoftext|>", additional_special_tokens=WHISPER_SPECIALS[1:]))
    ids = {t: tok.convert_tokens_to_ids(t) for t in WHISPER_SPECIALS}
    torch.manual_seed(seed)
    cfg = transformers.WhisperConfig(
        vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
        max_source_positions=200, max_target_positions=64, decoder_start_token_id=ids["<|startoftranscript|>"],
        eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"],
        begin_suppress_tokens=None, suppress_tokens=None, init_std=0.3,
    )
    model = transformers.WhisperForConditionalGeneration(cfg)
    gen = model.generation_config
    gen.lang_to_id = {"<|en|>": ids["<|en|>"]}
    gen.task_to_id = {"transcribe": ids["<|transcribe|>"]}
    gen.is_multilingual = True
    gen.no_timestamps_token_id = ids["<|notimestamps|>"]
    gen.decoder_start_token_id = ids["<|startoftranscript|>"]
    gen.forced_decoder_ids = None
    gen._from_model_config = False  # keep it when loading
    model.save_pretrained(path)
    tok.save_pretrained(path)
    transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
    return path
