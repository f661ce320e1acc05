"""Decoder of a pretrained Whisper model (``--decoder whisper-decoder``).

The checkpoint is loaded as ``WhisperForConditionalGeneration`` and its encoder is
replaced right away by a stub (only the decoder and ``proj_out`` stay in memory). The
decoder cross-attends to the encoder memory projected ``adim -> d_model`` (identity when
the sizes are equal), with a key-padding mask: Hugging Face's Whisper decoder passes no
encoder mask to its cross-attention (it always sees 30 s), so the mask is injected into
every ``encoder_attn`` call by a forward pre-hook while this module runs.

Prompt: ``<|startoftranscript|> <|lang|> <|transcribe|> <|notimestamps|>`` from the
model's tokenizer (tokens the tokenizer lacks are left out; the language and task tokens
only for a multilingual model); under :meth:`WhisperTextDecoder.condition_on` it is preceded
by ``<|startofprev|>`` and the text that came before (openai-whisper's previous-text prompt). Training is teacher-forced on ``prompt + text + eos``
(loss on text + eos). Decoding: a batch scorer of the joint CTC/attention beam search; the
prompt runs once per utterance, then one token per hypothesis on the model's
``EncoderDecoderCache`` (the cross-attention keys/values are computed once and copied only
when the hypotheses per utterance change), with the suppressed tokens of the model's
generation config. Greedy, it gives the token ids of the model's own ``generate``
(:meth:`WhisperTextDecoder.generate_ids`, kept as the reference).

Reproducing a pretrained Whisper: ``--audio-encoder whisper --decoder whisper-decoder``
with the same ``--*-model-name``, ``--elayers 0`` (no Conformer: the encoder output goes
straight to the decoder) and ``--adim`` = the model's ``d_model`` (identity projections)
gives the pretrained model's own transcription.
"""

import contextlib
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from espnet.nets.pytorch_backend.decoder.hf_decoder_base import HFSearchState, HFTextDecoder, load_tokenizer
from espnet.nets.pytorch_backend.frontend.hf_base import load_pretrained, pretrained_dtype, valid_mask
from espnet.nets.pytorch_backend.projection.auto_projection import AutoProjection


class _DroppedEncoder(torch.nn.Module):
    """Stands in for the Whisper encoder, which is not kept. Whisper's ``generate`` reads
    the strides of its two convolutions (1 and 2) to convert memory frames to mel frames."""

    main_input_name = "input_features"

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.conv1 = SimpleNamespace(stride=tuple(encoder.conv1.stride))
        self.conv2 = SimpleNamespace(stride=tuple(encoder.conv2.stride))

    def forward(self, *args, **kwargs):
        raise RuntimeError("the Whisper encoder is not loaded by --decoder whisper-decoder; pass encoder outputs")


class WhisperTextDecoder(HFTextDecoder):
    """Args:
        model_name: HF id or local directory (model + tokenizer).
        adim: Encoder output size.
        language: Language token (``en`` -> ``<|en|>``).
        dtype: Weight dtype.
    """

    default_model_name = "openai/whisper-base"

    def __init__(self, model_name: str, adim: int, language: str = "en", dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        full = load_pretrained("WhisperForConditionalGeneration", model_name, "--decoder-model-name",
                               "the Whisper decoder", ("whisper",), dtype=dtype)
        self.tokenizer = load_tokenizer(model_name, "the Whisper decoder")
        full.model.encoder = _DroppedEncoder(full.model.encoder)
        self.whisper = full
        cfg = full.config
        self.proj = AutoProjection(adim, int(cfg.d_model))
        tok = self.tokenizer
        gen = full.generation_config

        def token(t: str) -> Optional[int]:
            i = tok.convert_tokens_to_ids(t)
            return None if i is None or (tok.unk_token_id is not None and i == tok.unk_token_id) else int(i)

        sot = token("<|startoftranscript|>")
        if sot is None:
            sot = int(cfg.decoder_start_token_id)
        prompt = [sot]
        self.language = language
        self.multilingual = getattr(gen, "is_multilingual", True) is not False
        if self.multilingual:
            prompt += [i for i in (token(f"<|{language}|>"), token("<|transcribe|>")) if i is not None]
        notime = token("<|notimestamps|>")
        if notime is not None:
            prompt.append(notime)
        self.prompt_ids = prompt
        self.startofprev_id = token("<|startofprev|>")
        self._previous: Optional[List[List[int]]] = None  # per utterance: <|startofprev|> + text ids, or []
        eos = tok.eos_token_id if tok.eos_token_id is not None else cfg.eos_token_id
        self.eos_id = int(eos)
        self.pad_id = int(tok.pad_token_id) if tok.pad_token_id is not None else self.eos_id
        # what Whisper's generate suppresses: always, and at the first generated token
        self.suppress_ids = tuple(int(i) for i in (getattr(gen, "suppress_tokens", None) or ()))
        self.begin_suppress_ids = tuple(int(i) for i in (getattr(gen, "begin_suppress_tokens", None) or ()))
        self._memory_mask: Optional[torch.Tensor] = None
        for layer in full.model.decoder.layers:
            layer.encoder_attn.register_forward_pre_hook(self._inject_mask, with_kwargs=True)

    def pretrained_model(self) -> torch.nn.Module:
        return self.whisper

    @classmethod
    def from_config(cls, config, options) -> "WhisperTextDecoder":
        return cls(cls.model_dir(options), config.adim, dtype=pretrained_dtype(config))

    def text_ids(self, text: str) -> List[int]:
        text = text.strip()
        return list(self.tokenizer(" " + text if text else "", add_special_tokens=False)["input_ids"])

    # ---- previous text ---------------------------------------------------------------
    def previous_ids(self, text: str) -> List[int]:
        """``<|startofprev|>`` and the ids of ``text``'s last ``max_target_positions // 2 - 1``
        tokens (openai-whisper's limit: half of the decoder's positions), ``[]`` for no text."""
        ids = self.text_ids(text)
        if not ids:
            return []
        if self.startofprev_id is None:
            raise ValueError(f"the tokenizer of {type(self).__name__} has no <|startofprev|> token: it cannot "
                             "condition on previous text")
        return [self.startofprev_id] + ids[-(self.max_positions // 2 - 1):]

    @contextlib.contextmanager
    def condition_on(self, previous_texts: Sequence[str]):
        """Decode utterance ``i`` after ``<|startofprev|>`` + ``previous_texts[i]`` (before
        ``<|startoftranscript|>``), as openai-whisper conditions a window on the text of the
        windows before it. The prompts of one batch must have equal lengths (decode
        utterances with different previous texts one at a time); a batch ``k`` times larger
        than ``previous_texts`` (sampling ``k`` hypotheses per utterance) repeats each."""
        ids = [self.previous_ids(t) for t in previous_texts]
        if len({len(i) for i in ids}) > 1:
            raise ValueError("utterances conditioned on previous texts of different lengths are decoded one at a time")
        self._previous = ids if ids and ids[0] else None
        try:
            yield
        finally:
            self._previous = None

    def prompts(self, batch: int, device) -> torch.Tensor:
        """The prompt ids ``(B, P)`` of each utterance: the previous text if conditioned, then
        ``<|startoftranscript|>`` ... ``<|notimestamps|>``."""
        previous = self._previous
        if previous is None:
            return torch.tensor(self.prompt_ids, dtype=torch.long, device=device).expand(batch, -1)
        if batch % len(previous):
            raise ValueError(f"{len(previous)} previous texts for a batch of {batch} utterances")
        rows = [p + self.prompt_ids for p in previous for _ in range(batch // len(previous))]
        return torch.tensor(rows, dtype=torch.long, device=device)

    # ---- memory mask -----------------------------------------------------------------
    def _inject_mask(self, module, args, kwargs):
        mask = self._memory_mask
        if mask is None:
            return None
        hidden = args[0] if args else kwargs["hidden_states"]
        b = hidden.size(0)
        if mask.size(0) != b:  # beams: generate repeats each item num_beams times
            mask = mask.repeat_interleave(b // mask.size(0), dim=0)
        kwargs["attention_mask"] = mask.to(hidden.dtype)
        return args, kwargs

    @staticmethod
    def additive_mask(memory_lengths: Optional[torch.Tensor], t: int, dtype: torch.dtype, device
                      ) -> Optional[torch.Tensor]:
        """Additive ``(B, 1, 1, T)`` key-padding mask of the memory, ``None`` without padding."""
        if memory_lengths is None or bool((memory_lengths >= t).all()):
            return None
        keep = valid_mask(memory_lengths.to(device), t)
        m = torch.zeros(keep.shape, dtype=torch.float32, device=device)
        return m.masked_fill(~keep, torch.finfo(dtype).min)[:, None, None, :]

    @contextlib.contextmanager
    def masking(self, mask: Optional[torch.Tensor]):
        """Inject ``mask`` (see :meth:`additive_mask`) into every cross-attention while active."""
        self._memory_mask = mask
        try:
            yield
        finally:
            self._memory_mask = None

    def memory_mask(self, memory_lengths: Optional[torch.Tensor], t: int, dtype: torch.dtype, device):
        """:meth:`masking` with the mask of ``memory_lengths`` for ``t`` frames."""
        return self.masking(self.additive_mask(memory_lengths, t, dtype, device))

    def project(self, memory: torch.Tensor) -> torch.Tensor:
        return self.proj(memory).to(self.whisper.proj_out.weight.dtype)

    # ---- training --------------------------------------------------------------------
    def forward_text(self, memory, memory_lengths, texts: Sequence[str]) -> Dict[str, torch.Tensor]:
        device = memory.device
        mem = self.project(memory)
        p = len(self.prompt_ids)
        seqs = [self.prompt_ids + self.text_ids(t) + [self.eos_id] for t in texts]
        s = max(len(x) for x in seqs) - 1
        inputs = torch.full((len(seqs), s), self.pad_id, dtype=torch.long, device=device)
        labels = torch.full((len(seqs), s), -100, dtype=torch.long, device=device)
        attn = torch.zeros(len(seqs), s, dtype=torch.long, device=device)
        for i, x in enumerate(seqs):
            n = len(x) - 1
            inputs[i, :n] = torch.tensor(x[:-1], device=device)
            attn[i, :n] = 1
            labels[i, p - 1: n] = torch.tensor(x[p:], device=device)
        with self.memory_mask(memory_lengths, mem.size(1), mem.dtype, device):
            hidden = self.whisper.model.decoder(input_ids=inputs, attention_mask=attn, encoder_hidden_states=mem,
                                                use_cache=False).last_hidden_state
        return self.masked_loss(self.whisper.proj_out(hidden), labels)

    # ---- decoding --------------------------------------------------------------------
    @property
    def sos(self) -> int:
        """``<|startoftranscript|>``: the first id of a search prefix; the rest of the prompt
        (language, task, ``<|notimestamps|>``) runs in :meth:`start_prompt`."""
        return self.prompt_ids[0]

    @property
    def eos(self) -> int:
        return self.eos_id

    @property
    def max_positions(self) -> int:
        return int(self.whisper.config.max_target_positions)

    @property
    def prompt_length(self) -> int:
        return len(self.prompt_ids) + (len(self._previous[0]) if self._previous else 0)

    def projected_memory(self, memory: torch.Tensor) -> torch.Tensor:
        """``adim -> d_model``; refuses more frames than Whisper's 30 s window."""
        mem = self.project(memory)
        max_frames = int(self.whisper.config.max_source_positions)
        if mem.size(1) > max_frames:
            raise ValueError(f"--decoder whisper-decoder: the encoder memory has {mem.size(1)} frames, more than "
                             f"Whisper's {max_frames} (30 s); decode shorter clips")
        return mem

    def start_prompt(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> Tuple[torch.Tensor, HFSearchState]:
        """The prompt of every utterance (after its previous text under :meth:`condition_on`) in one pass (it fills the self- and cross-attention
        caches). Context: the projected ``memory`` ``(B, T, d_model)`` and its additive
        padding ``mask`` ``(B, 1, 1, T)`` (``None`` without padding)."""
        mem = self.projected_memory(memory)
        mask = self.additive_mask(memory_lengths, mem.size(1), mem.dtype, mem.device)
        prompt = self.prompts(mem.size(0), mem.device)
        with self.masking(mask):
            out = self.whisper.model.decoder(input_ids=prompt, encoder_hidden_states=mem, use_cache=True)
        logits = self.whisper.proj_out(out.last_hidden_state[:, -1])
        return logits, HFSearchState(cache=out.past_key_values, context={"memory": mem, "mask": mask})

    def step(self, tokens: torch.Tensor, length: int, state: HFSearchState) -> torch.Tensor:
        """The newest token of each hypothesis; the cross-attention reads the cached
        keys/values of its utterance's memory (the mask repeated over the hypotheses)."""
        with self.masking(state.context["mask"]):
            out = self.whisper.model.decoder(input_ids=tokens, encoder_hidden_states=state.context["memory"],
                                             past_key_values=state.cache, use_cache=True)
        return self.whisper.proj_out(out.last_hidden_state[:, -1])

    def select_cache(self, state: HFSearchState, rows: torch.Tensor, utts: torch.Tensor, width: int) -> None:
        """Self-attention rows follow the hypotheses. The cross-attention rows (the same keys
        and values for every hypothesis of an utterance) change only when the utterances or
        the hypotheses per utterance do: each utterance then keeps the first ``width`` rows
        of its block (repeated when the block is narrower), a view when they are a prefix
        (one utterance whose hypotheses dwindle), else a copy."""
        state.cache.self_attention_cache.reorder_cache(rows)
        if width == state.width and utts.numel() == state.utterances:
            return
        keep = torch.arange(width, device=utts.device) % state.width
        src = (utts.view(-1, 1) * state.width + keep).reshape(-1)
        cross = state.cache.cross_attention_cache
        if bool((src == torch.arange(src.numel(), device=src.device)).all()):
            cross.batch_select_indices(slice(0, src.numel()))  # rows [0, n): a view of the cache
        else:
            cross.reorder_cache(src)

    @torch.no_grad()
    def generate_ids(self, memory, memory_lengths, beam_size: int = 1, max_new_tokens: int = 64) -> List[List[int]]:
        """Generated token ids after the prompt (up to, without, eos) per utterance.

        Runs the pretrained model's own ``WhisperForConditionalGeneration.generate`` with
        the projected memory as ``encoder_outputs`` (its prompt, suppressed tokens,
        beam search and stopping at ``<|endoftext|>``), so a pretrained Whisper pair
        gives exactly Whisper's tokens; the memory's padding is masked in every
        cross-attention."""
        from transformers.modeling_outputs import BaseModelOutput

        mem = self.projected_memory(memory)
        kwargs = dict(encoder_outputs=BaseModelOutput(last_hidden_state=mem), num_beams=beam_size,
                      do_sample=False, max_new_tokens=max_new_tokens, return_timestamps=False,
                      return_dict_in_generate=True, force_unique_generate_call=True)  # one short-form pass
        if self.multilingual:
            kwargs.update(language=self.language, task="transcribe")
        with self.memory_mask(memory_lengths, mem.size(1), mem.dtype, mem.device):
            out = self.whisper.generate(**kwargs).sequences
        p = len(self.prompt_ids)
        rows = []
        for row in out.tolist():
            if row[:p] != self.prompt_ids:
                raise RuntimeError(f"Whisper's generate started with {row[:p]}, not the training prompt "
                                   f"{self.prompt_ids}")
            row = row[p:]
            rows.append(row[: row.index(self.eos_id)] if self.eos_id in row else row)
        return rows

