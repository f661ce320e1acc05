"""Recogniser assembled from registered components:
frontend(s) -> projection or fusion -> encoder (Conformer by default) -> CTC + decoder.

A single-modality model keeps the Auto-AVSR attribute names (``frontend``,
``proj_encoder``, ``encoder``, ``decoder``, ``ctc``) so that original ``model_avg_*.pth``
files load with ``strict=True``. An audio-visual model has ``vision_frontend``,
``audio_frontend`` and ``fusion`` instead of ``frontend`` and ``proj_encoder``.
"""

from typing import Any, Dict, List, Optional, Tuple

import torch

from espnet.nets.pytorch_backend.ctc import CTC
from espnet.nets.pytorch_backend.factories.decoder_factory import DecoderFactory
from espnet.nets.pytorch_backend.factories.frontend_factory import FrontendFactory
from espnet.nets.pytorch_backend.factories.fusion_factory import FusionFactory
from espnet.nets.pytorch_backend.model_config import ModelConfig
from espnet.nets.pytorch_backend.projection.auto_projection import AutoProjection
from espnet.nets.pytorch_backend.registry import ENCODERS

Inputs = Dict[str, Optional[torch.Tensor]]


class E2E(torch.nn.Module):
    """Hybrid CTC/attention recogniser for video, audio or both.

    Inputs (a dict): ``video`` ``(B, T, 1, 88, 88)`` + ``video_lengths`` (frames, 25 fps)
    and/or ``audio`` ``(B, S, 1)`` + ``audio_lengths`` (samples, 16 kHz). An audio-visual
    model also takes a batch without one of the streams, or ``video_present`` /
    ``audio_present`` ``(B,)`` bool marking the utterances that have it. Targets ``(B, L)``
    are padded with -1.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.modality = config.modality
        self.odim = config.odim
        self.blank = 0
        self.sos = self.eos = config.odim - 1 if config.odim is not None else None
        self.ignore_id = -1
        self.ctc_weight = config.ctc_weight

        if config.modality == "audiovisual":
            self.vision_frontend = FrontendFactory.create_vision_encoder(config.vision_encoder, config)
            self.audio_frontend = FrontendFactory.create_audio_encoder(config.audio_encoder, config)
            self.fusion = FusionFactory.create_fusion(
                config.fusion_type, self.vision_frontend.output_dim, self.audio_frontend.output_dim, config
            )
        else:
            if config.vision_encoder:
                self.frontend = FrontendFactory.create_vision_encoder(config.vision_encoder, config)
            else:
                self.frontend = FrontendFactory.create_audio_encoder(config.audio_encoder, config)
            self.proj_encoder = AutoProjection(self.frontend.output_dim, config.adim, config.projection)
        # --encoder none: the projected/fused frontend output is the encoder output (e.g. a
        # pretrained Whisper encoder feeding its own decoder unchanged)
        self.encoder = ENCODERS.create(config.encoder, config)
        if self.encoder.output_dim != config.adim:
            raise ValueError(f"--encoder {config.encoder} outputs {self.encoder.output_dim}-d frames; the CTC head "
                             f"and decoder take --adim {config.adim}")
        self.decoder = DecoderFactory.create_decoder(config.decoder, config)
        self.ctc = CTC(self.decoder.ctc_vocab_size, config.adim, config.dropout_rate, self.ignore_id)
        if self.decoder.reads_ctc and self.ctc_weight <= 0:
            raise ValueError(f"--decoder {config.decoder} reads the CTC head's posteriors (--paraformer-queries ctc): "
                             f"train the head, --ctc-weight > 0 (got {self.ctc_weight:g})")
        self.qlora_applied = False
        if config.use_qlora:  # last step: every component exists now
            from espnet.nets.pytorch_backend.lora.qlora_manager import QLoRAManager

            QLoRAManager(config).apply_qlora(self)

    @property
    def audio_utterance_norm(self) -> bool:
        """Whether the dataset should layer-norm each utterance's waveform for this
        model's audio frontend (see ``BaseFrontend.utterance_norm_input``)."""
        if self.modality == "audiovisual":
            return bool(self.audio_frontend.utterance_norm_input)
        return bool(self.frontend.utterance_norm_input) if self.modality == "audio" else True

    def untrained_parts(self) -> List[str]:
        """Names of the modules used in decoding whose parameters were not loaded from a
        pretrained model (a Conformer, a projection that is not the identity, a fusion
        layer, a decoder's input projection...). Empty when the model can decode zero-shot,
        straight from ``--*-model-name``. The CTC head is not counted: nothing pretrained has
        one, and zero-shot decoding goes without it (``eval.py`` without a checkpoint)."""
        pretrained = set()
        for module in self.modules():
            get = getattr(module, "pretrained_model", None)
            if module is not self and callable(get):
                pretrained.update(id(p) for p in get().parameters())
        used = [n for n, _ in self.named_children() if n != "ctc"]
        owners: List[str] = []
        for top in used:
            child = getattr(self, top)
            has_pretrained = any(id(p) in pretrained for p in child.parameters())
            for name, param in child.named_parameters():
                if id(param) in pretrained:
                    continue
                owner = top + ("." + name.split(".")[0] if has_pretrained and "." in name else "")
                if owner not in owners:
                    owners.append(owner)
        return owners

    def checkpoint_state_dict(self) -> Dict[str, torch.Tensor]:
        """What a checkpoint stores: the full state dict, or for a ``--use-qlora`` model
        only what cannot be rebuilt from ``--*-model-name`` (adapters, new modules)."""
        if not self.qlora_applied:
            return self.state_dict()
        from espnet.nets.pytorch_backend.lora.qlora_manager import checkpoint_state_dict

        return checkpoint_state_dict(self)

    @staticmethod
    def _stream(inputs: Inputs, key: str) -> Tuple[torch.Tensor, torch.Tensor]:
        x, lengths = inputs.get(key), inputs.get(f"{key}_lengths")
        if x is None or lengths is None:
            raise ValueError(f"this model needs '{key}' and '{key}_lengths' inputs")
        return x, lengths

    @staticmethod
    def _present_features(frontend: torch.nn.Module, inputs: Inputs, key: str):
        """Frontend features of the utterances that have stream ``key`` (audio-visual models).

        ``inputs`` may lack the stream (missing for the whole batch: ``None`` features) or
        mark the utterances that have it with ``{key}_present`` ``(B,)``; the frontend then
        runs on those rows only (its BatchNorm sees no stand-in input) and the other rows are
        zero, length 0.

        Returns:
            ``(B, T', D)`` or ``None``, lengths ``(B,)`` or ``None``, present ``(B,)`` or
            ``None`` (= every utterance has it).
        """
        x = inputs.get(key)
        if x is None:
            return None, None, None
        lengths = inputs.get(f"{key}_lengths")
        if lengths is None:
            raise ValueError(f"this model needs '{key}_lengths' with '{key}'")
        present = inputs.get(f"{key}_present")
        if present is None or bool(present.all()):
            feats, out_lengths = frontend(x, lengths)
            return feats, out_lengths, None
        rows = present.nonzero().squeeze(1)
        if rows.numel() == 0:
            return None, None, None
        feats, sub_lengths = frontend(x[rows, : int(lengths[rows].max())], lengths[rows])
        out = feats.new_zeros(x.size(0), *feats.shape[1:])
        out[rows] = feats
        out_lengths = sub_lengths.new_zeros(x.size(0))
        out_lengths[rows] = sub_lengths
        return out, out_lengths, present

    def fuse_frontends(self, inputs: Inputs) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frontend(s) + projection/fusion: ``(B, T, adim)`` and lengths. An audio-visual model
        takes utterances with one stream missing (see :meth:`_present_features` and
        :class:`~espnet.nets.pytorch_backend.fusion.multimodal_fusion.MultimodalFusion`)."""
        if self.modality == "audiovisual":
            v, v_len, v_present = self._present_features(self.vision_frontend, inputs, "video")
            a, a_len, a_present = self._present_features(self.audio_frontend, inputs, "audio")
            return self.fusion(
                (v, v_len, self.vision_frontend.frame_rate, v_present),
                (a, a_len, self.audio_frontend.frame_rate, a_present),
            )
        feats, lengths = self.frontend(*self._stream(inputs, self.modality))
        return self.proj_encoder(feats), lengths

    def encode(self, inputs: Inputs) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encoder output ``(B, T, adim)`` and its lengths."""
        return self.encoder(*self.fuse_frontends(inputs))

    def losses(self, inputs: Inputs, label: torch.Tensor,
               texts: Optional[List[Optional[str]]] = None) -> Dict[str, Any]:
        """The hybrid loss ``loss = ctc_weight * loss_ctc + (1 - ctc_weight) * loss_att`` and
        its parts: ``loss_ctc``, ``loss_att`` (the decoder's loss; for the Paraformer its
        cross-entropy plus its weighted quantity loss), ``acc`` (float), and any further
        ``loss_*`` scalar the decoder reports (the Paraformer's ``loss_ce`` and
        ``loss_quantity``).

        The reference comes in both forms, ``label`` (SentencePiece ids ``(B, L)``, padded
        with -1) and ``texts`` (transcripts); the decoder and its CTC targets use the one
        the decoder's vocabulary needs.
        """
        enc, enc_lengths = self.encode(inputs)
        if self.decoder.reads_ctc:  # its inputs come from the CTC head's posteriors
            out = self.decoder.forward_train(enc, enc_lengths, label, texts, ctc=self.ctc)
        else:
            out = self.decoder.forward_train(enc, enc_lengths, label, texts)
        if self.ctc_weight > 0:
            loss_ctc, _ = self.ctc(enc, enc_lengths, self.decoder.ctc_targets(label, texts))
        else:  # not computed (a pretrained decoder's vocabulary makes a large CTC head)
            loss_ctc = enc.new_zeros(())
        loss_att = out["loss_att"]
        loss = self.ctc_weight * loss_ctc + (1 - self.ctc_weight) * loss_att
        extra = {k: v for k, v in out.items() if k.startswith("loss_") and k != "loss_att"}
        return {"loss": loss, "loss_ctc": loss_ctc, "loss_att": loss_att, "acc": out["acc"], **extra}

    def forward(
        self, inputs: Inputs, label: torch.Tensor, texts: Optional[List[Optional[str]]] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """Hybrid loss ``ctc_weight * ctc + (1 - ctc_weight) * att`` (see :meth:`losses`).

        Returns:
            ``loss, loss_ctc, loss_att, acc``.
        """
        out = self.losses(inputs, label, texts)
        return out["loss"], out["loss_ctc"], out["loss_att"], out["acc"]
