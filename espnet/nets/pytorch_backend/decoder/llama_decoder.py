"""Pretrained causal language model (LLaMA family) as the decoder (``--decoder llama``).

Each utterance becomes one sequence of input embeddings::

    [bos] <|av_start|> soft_prompt(T_i frames) <|av_end|> instruction  target  eos

``soft_prompt`` is the encoder output (after the Conformer) projected to the LLM hidden
size (``linear(adim * K -> hidden)``; with ``--llm-downsample K`` every K frames are
stacked first, lengths ``ceil(len / K)``). ``<|av_start|>`` / ``<|av_end|>`` are added as
special tokens (the embedding table is resized when the tokenizer grows). The
instruction is ``--llm-prompt`` (default per modality). The loss covers the target and
eos only (labels -100 elsewhere).

Padding: training sequences are right-padded (attention mask 0, labels -100), so with
causal attention and positions counted from each sequence's start an utterance's loss
does not depend on its batch-mates. Decoding left-pads the prompts (the layout HF
``generate`` expects for decoder-only models; positions follow the attention mask), runs
them once, then scores one token per hypothesis on the KV cache in the beam search.
"""

from typing import Dict, List, Sequence, Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option, merge
from espnet.nets.pytorch_backend.decoder.hf_decoder_base import (
    HFSearchState,
    HFTextDecoder,
    downsample_frames,
    load_tokenizer,
)
from espnet.nets.pytorch_backend.frontend.hf_base import load_pretrained, pretrained_dtype

DEFAULT_PROMPTS = {
    "video": "Transcribe the video to text.",
    "audio": "Transcribe the audio to text.",
    "audiovisual": "Transcribe the audio and video to text.",
}
AV_START, AV_END = "<|av_start|>", "<|av_end|>"
CAUSAL_LM_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo")


class LlamaDecoder(HFTextDecoder):
    """Args:
        model_name: HF id or local directory (model + tokenizer).
        adim: Encoder output size.
        prompt: Instruction text.
        downsample: Stack this many encoder frames per soft-prompt token.
        dtype: Weight dtype of the language model.
    """

    default_model_name = "meta-llama/Llama-3.2-1B"
    options = merge(HFTextDecoder.options, (
        Option("prompt", None, "Instruction after the soft prompt. (Default per modality: 'Transcribe the video to "
               "text.' / 'Transcribe the audio to text.' / 'Transcribe the audio and video to text.')", type=str,
               flag="--llm-prompt"),
        Option("downsample", 1, "Stack K encoder frames per LLM soft-prompt token (lengths ceil(len/K)).",
               minimum=1, flag="--llm-downsample"),
    ))

    def __init__(self, model_name: str, adim: int, prompt: str, downsample: int = 1,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if downsample < 1:
            raise ValueError(f"--llm-downsample must be >= 1, got {downsample}")
        self.llm = load_pretrained("AutoModelForCausalLM", model_name, "--decoder-model-name", "the LLaMA decoder",
                                   CAUSAL_LM_TYPES, dtype=dtype)
        self.tokenizer = load_tokenizer(model_name, "the LLaMA decoder")
        self.tokenizer.add_special_tokens({"additional_special_tokens": [AV_START, AV_END]})
        old_rows = self.llm.get_input_embeddings().num_embeddings
        if len(self.tokenizer) > old_rows:
            self.llm.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
            self._init_new_rows(old_rows)
        if self.tokenizer.eos_token_id is None:
            raise ValueError(f"--decoder-model-name {model_name}: the tokenizer has no eos token")
        self.eos_id = int(self.tokenizer.eos_token_id)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_id
        self.bos_id = self.tokenizer.bos_token_id
        self.av_start = int(self.tokenizer.convert_tokens_to_ids(AV_START))
        self.av_end = int(self.tokenizer.convert_tokens_to_ids(AV_END))
        self.prompt = prompt
        self.prompt_ids = self.text_ids(prompt)
        self.downsample = int(downsample)
        hidden = int(self.llm.config.hidden_size)
        self.proj = torch.nn.Linear(adim * self.downsample, hidden)

    @torch.no_grad()
    def _init_new_rows(self, start: int) -> None:
        """Embedding rows of the added tokens: N(0, initializer_range) drawn from a fixed
        seed, so that a model rebuilt from the same directory has the same rows (a
        ``--use-qlora`` checkpoint stores adapters only, not the embedding table)."""
        gen = torch.Generator().manual_seed(20240607)
        std = float(getattr(self.llm.config, "initializer_range", 0.02))
        tables = [self.llm.get_input_embeddings()]
        out = self.llm.get_output_embeddings()
        if out is not None and out.weight is not tables[0].weight:
            tables.append(out)
        for table in tables:
            rows = table.weight[start:]
            rows.copy_(torch.randn(rows.shape, generator=gen, dtype=torch.float32).mul_(std).to(rows.dtype))

    def pretrained_model(self) -> torch.nn.Module:
        return self.llm

    @classmethod
    def from_config(cls, config, options) -> "LlamaDecoder":
        prompt = options["prompt"] or DEFAULT_PROMPTS[config.modality]
        return cls(cls.model_dir(options), config.adim, prompt, downsample=options["downsample"],
                   dtype=pretrained_dtype(config))

    # ---- sequence assembly -----------------------------------------------------------
    def _embed(self, ids: List[int], device) -> torch.Tensor:
        table = self.llm.get_input_embeddings()
        return table(torch.tensor(ids, dtype=torch.long, device=device))

    def soft_prompt(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x, lengths = downsample_frames(memory, memory_lengths, self.downsample)
        x = self.proj(x.to(self.proj.weight.dtype))
        return x.to(self.llm.get_input_embeddings().weight.dtype), lengths

    def prompt_pieces(self, soft: torch.Tensor, length: int, device) -> torch.Tensor:
        """``[bos] <av_start> soft <av_end> instruction`` for one utterance: ``(P, H)``."""
        head = ([int(self.bos_id)] if self.bos_id is not None else []) + [self.av_start]
        tail = [self.av_end] + self.prompt_ids
        return torch.cat([self._embed(head, device), soft[:length], self._embed(tail, device)], dim=0)

    def build_train_batch(self, memory, memory_lengths, texts: Sequence[str]):
        """Right-padded ``inputs_embeds (B, S, H)``, ``attention_mask (B, S)``, ``labels (B, S)``."""
        device = memory.device
        soft, lengths = self.soft_prompt(memory, memory_lengths)
        seqs, labels = [], []
        for i, text in enumerate(texts):
            prompt = self.prompt_pieces(soft[i], int(lengths[i]), device)
            target = self.text_ids(text) + [self.eos_id]
            seqs.append(torch.cat([prompt, self._embed(target, device)], dim=0))
            labels.append([-100] * prompt.size(0) + target)
        s = max(x.size(0) for x in seqs)
        h = seqs[0].size(1)
        embeds = seqs[0].new_zeros(len(seqs), s, h)
        mask = torch.zeros(len(seqs), s, dtype=torch.long, device=device)
        lab = torch.full((len(seqs), s), -100, dtype=torch.long, device=device)
        for i, (x, y) in enumerate(zip(seqs, labels)):
            embeds[i, : x.size(0)] = x
            mask[i, : x.size(0)] = 1
            lab[i, : x.size(0)] = torch.tensor(y, dtype=torch.long, device=device)
        return embeds, mask, lab

    def forward_text(self, memory, memory_lengths, texts: Sequence[str]) -> Dict[str, torch.Tensor]:
        embeds, mask, labels = self.build_train_batch(memory, memory_lengths, texts)
        logits = self.llm(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits
        out = self.masked_loss(logits[:, :-1], labels[:, 1:])
        out["labels"] = labels
        return out

    # ---- decoding --------------------------------------------------------------------
    @property
    def sos(self) -> int:
        """First id of a search prefix: a stand-in for the prompt (never fed to the model)."""
        return int(self.bos_id) if self.bos_id is not None else self.eos_id

    @property
    def eos(self) -> int:
        return self.eos_id

    def left_padded_prompts(self, memory: torch.Tensor, memory_lengths: torch.Tensor
                            ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Prompts of a padded batch, left-padded: ``inputs_embeds`` ``(B, P, H)`` and
        ``attention_mask`` ``(B, P)`` (1 on the prompt, 0 on the padding before it)."""
        device = memory.device
        soft, lengths = self.soft_prompt(memory, memory_lengths)
        prompts = [self.prompt_pieces(soft[i], int(lengths[i]), device) for i in range(memory.size(0))]
        s = max(p.size(0) for p in prompts)
        embeds = prompts[0].new_zeros(len(prompts), s, prompts[0].size(1))
        mask = torch.zeros(len(prompts), s, dtype=torch.long, device=device)
        for i, p in enumerate(prompts):
            embeds[i, s - p.size(0):] = p
            mask[i, s - p.size(0):] = 1
        return embeds, mask

    @torch.no_grad()
    def generate_ids(self, memory: torch.Tensor, memory_lengths: torch.Tensor, beam_size: int = 1,
                     max_new_tokens: int = 64) -> List[List[int]]:
        """Batched ``generate`` (KV cache) on left-padded prompts -> the generated ids of each
        utterance, up to (without) eos."""
        embeds, mask = self.left_padded_prompts(memory, memory_lengths)
        out = self.llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                                num_beams=beam_size, do_sample=False, eos_token_id=self.eos_id,
                                pad_token_id=self.pad_id)
        rows = []
        for row in out.tolist():
            rows.append(row[: row.index(self.eos_id)] if self.eos_id in row else row)
        return rows

    def start_prompt(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> Tuple[torch.Tensor, HFSearchState]:
        """One pass over the left-padded prompts (positions count from each prompt's first
        token, as in ``generate``). Context: ``mask`` ``(B, P)`` and the prompt lengths
        ``lengths`` ``(B,)`` (the first generated token's position)."""
        embeds, mask = self.left_padded_prompts(memory, memory_lengths)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                       logits_to_keep=1)
        context = {"mask": mask, "lengths": mask.sum(-1)}
        return out.logits[:, -1], HFSearchState(cache=out.past_key_values, context=context)

    def step(self, tokens: torch.Tensor, length: int, state: HFSearchState) -> torch.Tensor:
        """The newest token of each hypothesis at position ``prompt length + length - 2``,
        attending to its utterance's prompt (not its padding) and its own tokens."""
        n = tokens.size(0)
        mask = state.context["mask"].repeat_interleave(state.width, dim=0)
        mask = torch.cat([mask, mask.new_ones(n, length - 1)], dim=1)
        positions = (state.context["lengths"].repeat_interleave(state.width) + (length - 2)).view(n, 1)
        out = self.llm(input_ids=tokens, attention_mask=mask, position_ids=positions, past_key_values=state.cache,
                       use_cache=True, logits_to_keep=1)
        return out.logits[:, -1]
