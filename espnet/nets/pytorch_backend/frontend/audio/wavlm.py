"""WavLM frontend: a pretrained self-supervised speech model on the raw waveform."""

import warnings
from typing import Dict, Optional, Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option, merge
from espnet.nets.pytorch_backend.frontend.hf_base import (
    HFFrontend,
    load_preprocessor_config,
    load_pretrained,
    mono_waveform,
    valid_mask,
)


class WavLMFrontend(HFFrontend):
    """``transformers.WavLMModel`` (``--audio-encoder wavlm``).

    Input ``(B, S, 1)`` 16 kHz waveform, lengths in samples. Output ``(B, T', hidden)``
    at 50 Hz (the convolutional feature encoder's total stride is 320), lengths from the
    model's own convolution formula (``_get_feat_extract_output_lengths``), padded
    frames zero.

    Padding: samples after an item's end are zeroed; the transformer gets the attention
    mask of the valid frames. For checkpoints whose first convolution has a GroupNorm
    over time (``feat_extract_norm="group"``, e.g. wavlm-base(-plus)), its statistics are
    computed over the item's valid frames only, so an item's outputs do not depend on
    its batch-mates (HF's own forward normalises over the padding too).

    ``layer_weights=True``: the output is a learned softmax-weighted sum of the encoder's
    hidden states (input of the first layer + every layer's output, SUPERB style), the
    weights stay trainable even when the model is frozen. Otherwise the last hidden state.

    Input: the waveform at its recorded level (the dataset does not normalise audio for
    this frontend). When the model's feature extractor normalises (``do_normalize`` in
    its ``preprocessor_config.json``), each item is brought to zero mean and unit
    variance over its valid samples (``(x - mean) / sqrt(var + 1e-7)``, as
    ``Wav2Vec2FeatureExtractor`` does); otherwise (e.g. wavlm-base-plus) it is used as is.

    SpecAugment-style masking of the model config (``mask_time_prob``,
    ``mask_feature_prob``) is applied when unfrozen and training, as in HF fine-tuning
    (skipped for inputs not longer than ``mask_time_length`` frames).
    """

    frame_rate = 50.0
    default_model_name = "microsoft/wavlm-base-plus"
    options = merge(HFFrontend.options, (
        Option("layer_weights", False, "Use a learned weighted sum of all WavLM hidden layers (default: the last "
               "layer).", flag="--wavlm-layer-weights"),
    ))
    # --use-qlora: HF's WavLM attention hands the q/k/v/out projection weights straight to
    # F.multi_head_attention_forward (the layers are never called), so they stay full
    # precision and adapters go on the feed-forward layers instead.
    qlora_keep_full_precision = ("q_proj", "k_proj", "v_proj", "out_proj")
    qlora_default_targets = ("intermediate_dense", "output_dense")

    def __init__(self, model_name: str, freeze: bool = True, layer_weights: bool = False,
                 normalize: Optional[bool] = None, dtype: torch.dtype = torch.float32) -> None:
        model = load_pretrained("WavLMModel", model_name, "--audio-model-name", "the WavLM frontend", ("wavlm",),
                               dtype=dtype)
        super().__init__(model, freeze)
        cfg = model.config
        self.output_dim = int(cfg.hidden_size)
        if normalize is None:
            normalize = bool(load_preprocessor_config(model_name).get("do_normalize", False))
        self.normalize = bool(normalize)
        self.group_norm_first = cfg.feat_extract_norm == "group"
        self.layer_weights = (
            torch.nn.Parameter(torch.zeros(cfg.num_hidden_layers + 1)) if layer_weights else None
        )

    def spec_augment_active(self, num_frames: int) -> bool:
        cfg = self.model.config
        return (
            not self.frozen
            and self.training
            and getattr(cfg, "apply_spec_augment", True)
            and hasattr(self.model, "_mask_hidden_states")
            and num_frames > cfg.mask_time_length  # HF's mask sampler rejects shorter inputs
        )

    def output_lengths(self, samples: torch.Tensor) -> torch.Tensor:
        return self.model._get_feat_extract_output_lengths(samples.to(torch.long)).to(torch.long)

    def conv_features(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Feature encoder ``(B, S)`` -> ``(B, C, T')`` with a masked GroupNorm."""
        h = wave.unsqueeze(1).to(self.model.dtype)
        layers = self.model.feature_extractor.conv_layers
        for i, layer in enumerate(layers):
            if i == 0 and self.group_norm_first:
                h = layer.conv(h)
                norm = layer.layer_norm  # GroupNorm(C, C): per-channel statistics over time
                conv = layer.conv
                n = torch.div(lengths - conv.kernel_size[0], conv.stride[0], rounding_mode="floor") + 1
                m = valid_mask(n.clamp(min=1), h.size(-1)).unsqueeze(1).to(h.dtype)
                count = m.sum(-1, keepdim=True)
                mean = (h * m).sum(-1, keepdim=True) / count
                var = (((h - mean) * m) ** 2).sum(-1, keepdim=True) / count
                h = (h - mean) / torch.sqrt(var + norm.eps)
                if norm.affine:
                    h = h * norm.weight.view(1, -1, 1) + norm.bias.view(1, -1, 1)
                h = layer.activation(h)
            else:
                h = layer(h)
        return h

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = mono_waveform(x, "WavLM frontend")
        lengths = lengths.to(torch.long)
        out_len = self.output_lengths(lengths)
        valid = valid_mask(lengths, x.size(1)).to(x.dtype)
        wave = x * valid
        if self.normalize:
            count = lengths.clamp(min=1).unsqueeze(1).to(x.dtype)
            mean = wave.sum(1, keepdim=True) / count
            var = (((wave - mean) * valid) ** 2).sum(1, keepdim=True) / count
            wave = (wave - mean) / torch.sqrt(var + 1e-7) * valid
        states: Dict[int, torch.Tensor] = {}  # -1: input of the first layer, i: output of layer i
        hooks = []
        if self.layer_weights is not None:
            layers = self.model.encoder.layers

            def keep_input(module, args, kwargs):
                states[-1] = args[0] if args else kwargs["hidden_states"]

            def keep_output(index):
                def hook(module, args, out):
                    states[index] = out[0] if isinstance(out, tuple) else out

                return hook

            hooks.append(layers[0].register_forward_pre_hook(keep_input, with_kwargs=True))
            hooks.extend(layer.register_forward_hook(keep_output(i)) for i, layer in enumerate(layers))
        try:
            with self.model_context(), warnings.catch_warnings():
                # HF WavLM passes a bool padding mask with a float position bias to torch's MHA
                warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
                feats = self.conv_features(wave, lengths).transpose(1, 2)  # (B, T', C)
                mask = valid_mask(out_len, feats.size(1))
                hidden, _ = self.model.feature_projection(feats)
                if self.spec_augment_active(hidden.size(1)):
                    hidden = self.model._mask_hidden_states(hidden, attention_mask=mask)
                hidden = self.model.encoder(hidden, attention_mask=mask).last_hidden_state
        finally:
            for hook in hooks:
                hook.remove()
        if self.layer_weights is not None:
            seq = [states[-1]]
            for i in range(self.layer_weights.numel() - 1):  # a layer skipped by LayerDrop passes its input on
                seq.append(states.get(i, seq[-1]))
            w = torch.softmax(self.layer_weights, 0)
            hidden = sum(wi * s for wi, s in zip(w, seq))
        hidden = hidden * mask.unsqueeze(-1).to(hidden.dtype)
        return hidden, out_len
