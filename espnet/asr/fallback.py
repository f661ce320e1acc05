"""Decoding with a repetition guard and openai-whisper's temperature fallback.

Every utterance is decoded by the model's search (beam search or greedy: "temperature 0").
Each hypothesis is checked (:func:`espnet.asr.repetition.check_hypothesis`: compression ratio,
length limit, average log-probability). With a :class:`FallbackOptions`, an utterance whose
hypothesis fails is decoded again by sampling at each temperature in turn (``best_of``
samples), and the first result that passes is kept, else the last one, still marked as failed.
As in openai-whisper: no beam at a temperature above 0, the log-probabilities of a sample are
the model's own (not divided by the temperature), thresholds 2.4 and -1.0, temperatures 0.2,
0.4, ..., 1.0 and 5 samples. Unlike openai-whisper, which keeps the sample with the highest
average log-probability and checks only that one, the most probable sample *that passes the
guard* is kept (the most probable one when none does): a sample that ran to the length limit
lacks its end token, usually its least probable one, so it often ranks first although it
repeats.

Sampling works for every decoder that is a batch scorer of the beam search (Transformer,
LLaMA, Whisper); it uses the decoder alone (no CTC prefix scores, no length bonus). Each
utterance is sampled on its own with a generator seeded by ``seed``, so its result does not
depend on the other utterances of the batch."""

import contextlib
import math
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import torch

from espnet.asr.recognizer import decode_memory, encode_utterances
from espnet.asr.repetition import GuardOptions, HypothesisCheck, average_logprob, check_hypothesis
from espnet.nets.beam_search import length_limits
from espnet.nets.pytorch_backend.decoder.base_decoder import DecodeOptions, Decoded

DEFAULT_TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)  # openai-whisper: 0.0 (the search), then these
DEFAULT_BEST_OF = 5


@dataclass(frozen=True)
class FallbackOptions:
    """Temperatures tried in turn after the search (each in (0, 2], rising), samples per
    temperature, and the seed of the sampling."""

    temperatures: Tuple[float, ...] = DEFAULT_TEMPERATURES
    best_of: int = DEFAULT_BEST_OF
    seed: int = 0

    def __post_init__(self) -> None:
        temps = tuple(self.temperatures)
        if not temps:
            raise ValueError("--fallback-temperatures: give at least one temperature, or none")
        if any(not (math.isfinite(t) and 0.0 < t <= 2.0) for t in temps):
            raise ValueError(f"--fallback-temperatures: each temperature must be in (0, 2] (0 is the search "
                             f"itself), got {','.join(f'{t:g}' for t in temps)}")
        if any(b <= a for a, b in zip(temps, temps[1:])):
            raise ValueError(f"--fallback-temperatures must rise, got {','.join(f'{t:g}' for t in temps)}")
        if self.best_of < 1:
            raise ValueError(f"--fallback-best-of must be >= 1, got {self.best_of}")


def parse_temperatures(text: str) -> Optional[Tuple[float, ...]]:
    """``"0.2,0.4"`` -> ``(0.2, 0.4)``; ``"none"`` -> ``None`` (no fallback). A bad value is a
    ``ValueError`` naming the flag (the values themselves are checked by :class:`FallbackOptions`)."""
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        return tuple(float(t) for t in text.split(","))
    except ValueError:
        raise ValueError(f"--fallback-temperatures: expected comma-separated numbers or none, got {text!r}") from None


@dataclass
class GuardedHypothesis:
    """A kept hypothesis: its ids and score, its text, what the guard found, and the
    temperature it was decoded at (0.0: the search)."""

    decoded: Decoded
    text: str
    check: HypothesisCheck
    temperature: float = 0.0

    def to_json(self) -> dict:
        out = self.check.to_json()
        out["temperature"] = self.temperature
        return out


@contextlib.contextmanager
def conditioned(decoder: Any, previous_texts: Optional[Sequence[str]]):
    """The decoder conditioned on each utterance's previous text (``None``: not conditioned)."""
    if previous_texts is None:
        yield
    else:
        with decoder.condition_on(previous_texts):
            yield


@torch.no_grad()
def sample_memory(model: Any, memory: torch.Tensor, memory_lengths: torch.Tensor, options: DecodeOptions,
                  temperature: float, best_of: int, generator: torch.Generator) -> List[List[Decoded]]:
    """For each utterance of the padded batch ``memory`` ``(B, T, D)`` (lengths ``(B,)``),
    ``best_of`` hypotheses sampled from the decoder's distribution divided by ``temperature``,
    up to the decoder's length limit, most probable first (highest average log-probability);
    each one's score is the sum of the model's log-probabilities, end token included."""
    decoder = model.decoder
    if decoder.decodes_itself:
        raise ValueError(f"{type(decoder).__name__} decodes by its own search; it cannot be sampled")
    mem = memory.repeat_interleave(best_of, dim=0)
    lengths = memory_lengths.to(memory.device).repeat_interleave(best_of)
    n = mem.size(0)
    ratio = decoder.max_length_ratio(options)
    maxlens = [length_limits(int(t), ratio, 0.0)[0] for t in lengths.tolist()]
    state = decoder.batch_init_state(mem, lengths)
    ys = torch.full((n, 1, 1), decoder.sos, dtype=torch.long, device=mem.device)
    rows = torch.arange(n, device=mem.device)
    sum_logprob = [0.0] * n
    tokens: List[List[int]] = [[] for _ in range(n)]
    done, at_limit = [False] * n, [False] * n
    for _ in range(max(maxlens)):
        logp, state = decoder.batch_score(ys, state)
        logp = logp[:, 0].float()  # (n, V) log-probabilities
        probs = torch.softmax(logp / temperature, dim=-1)
        picked = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        picked_lp = logp.gather(1, picked.unsqueeze(1)).squeeze(1).tolist()
        picked_ids = picked.tolist()
        for r in range(n):
            if done[r]:
                picked_ids[r] = decoder.eos
                continue
            sum_logprob[r] += picked_lp[r]
            if picked_ids[r] == decoder.eos:
                done[r] = True
            else:
                tokens[r].append(picked_ids[r])
                if len(tokens[r]) >= maxlens[r]:
                    done[r] = at_limit[r] = True
        if all(done):
            break
        step = torch.tensor(picked_ids, dtype=torch.long, device=mem.device).view(n, 1)
        ys = torch.cat([ys, step.unsqueeze(2)], dim=2)
        state = decoder.select_state(state, rows, torch.zeros_like(step), step)
    out = []
    for b in range(memory.size(0)):
        group = sorted(range(b * best_of, (b + 1) * best_of),
                       key=lambda k: (-average_logprob(sum_logprob[k], len(tokens[k])), k))
        out.append([Decoded(tokens[r], sum_logprob[r], hit_length_limit=at_limit[r]) for r in group])
    return out


def score_is_logprob(model: Any, options: DecodeOptions) -> bool:
    """Whether the search's score is the decoder's own log-probability: an autoregressive
    decoder's search (not CTC greedy, not a decoder with its own search), no CTC prefix scores
    (weight 0, or a CTC head never trained) and no length bonus."""
    if options.mode != "decoder" or model.decoder.decodes_itself:
        return False
    return options.penalty == 0.0 and (options.ctc_weight == 0.0 or model.ctc_weight == 0.0)


@torch.no_grad()
def decode_guarded(model: Any, memory: torch.Tensor, memory_lengths: torch.Tensor, options: DecodeOptions,
                   tokenizer: Any = None, guard: GuardOptions = GuardOptions(),
                   fallback: Optional[FallbackOptions] = None,
                   previous_texts: Optional[Sequence[str]] = None) -> List[GuardedHypothesis]:
    """The search's best hypothesis of each utterance of a padded batch of encoder outputs,
    checked by ``guard``; with ``fallback``, failed ones decoded again by sampling (see the
    module docstring). ``tokenizer``: the SentencePiece tokenizer for the Transformer decoder.
    ``previous_texts``: per utterance, the text to condition on (a decoder with
    ``condition_on``: Whisper)."""
    decoder = model.decoder
    if fallback is not None and (options.mode != "decoder" or decoder.decodes_itself):
        what = "--decode-mode ctc-greedy" if options.mode != "decoder" else f"{type(decoder).__name__} (its own search)"
        raise ValueError(f"--fallback-temperatures: the fallback samples an autoregressive decoder, which {what} "
                         "does not use; pass --fallback-temperatures none")
    logprob = score_is_logprob(model, options)

    def guarded(d: Decoded, temperature: float, is_logprob: bool) -> GuardedHypothesis:
        text = decoder.ids_to_text(d.token_ids, tokenizer)
        avg = average_logprob(d.score, len(d.token_ids)) if is_logprob else None
        return GuardedHypothesis(d, text, check_hypothesis(text, d.hit_length_limit, avg, guard), temperature)

    with conditioned(decoder, previous_texts):
        first = decode_memory(model, memory, memory_lengths, options)
    results = [guarded(d, 0.0, logprob) for d in first]
    if fallback is None:
        return results
    for i, result in enumerate(results):
        for temperature in fallback.temperatures:
            if not result.check.failed:
                break
            generator = torch.Generator(device=memory.device).manual_seed(fallback.seed)
            with conditioned(decoder, None if previous_texts is None else [previous_texts[i]]):
                samples = sample_memory(model, memory[i : i + 1], memory_lengths[i : i + 1], options, temperature,
                                        fallback.best_of, generator)[0]
            checked = [guarded(d, temperature, True) for d in samples]
            result = next((c for c in checked if not c.check.failed), checked[0])
        results[i] = result
    return results


@torch.no_grad()
def recognize_guarded(model: Any, items: Sequence[dict], options: DecodeOptions, tokenizer: Any = None,
                      guard: GuardOptions = GuardOptions(), fallback: Optional[FallbackOptions] = None,
                      previous_texts: Optional[Sequence[str]] = None) -> List[GuardedHypothesis]:
    """:func:`decode_guarded` of unbatched utterances (``video`` ``(T, 1, H, W)`` / ``audio``
    ``(S, 1)``), encoded together (:func:`espnet.asr.recognizer.encode_utterances`)."""
    memory, lengths = encode_utterances(model, items)
    return decode_guarded(model, memory, lengths, options, tokenizer, guard, fallback, previous_texts)


def length_limit_name(model: Any, max_new_tokens: int) -> str:
    """How the length limit of ``model``'s decoder is named in messages: ``--max-new-tokens N``
    for a decoder with a token limit (LLaMA, Whisper), else ``the encoder length``."""
    bounded = model.decoder.max_length_ratio(DecodeOptions(max_new_tokens=max_new_tokens)) < 0
    return f"--max-new-tokens {max_new_tokens}" if bounded else "the encoder length"


def logprob_flag(text: str) -> Optional[float]:
    """``--logprob-threshold``: a number, or ``none`` (not checked)."""
    if text.strip().lower() == "none":
        return None
    return float(text)


def add_guard_args(parser: Any, fallback_default: str) -> None:
    """The guard's and the fallback's flags (``eval.py``, ``transcribe.py``);
    ``fallback_default``: the default of ``--fallback-temperatures``."""
    g = parser.add_argument_group("repetition guard and fallback")
    g.add_argument("--compression-ratio-threshold", type=float, default=GuardOptions.compression_ratio_threshold,
                   help="A hypothesis whose text compresses (zlib) by more than this ratio repeats itself; so does "
                        "one stopped at the length limit. Such hypotheses are counted, warned about and marked "
                        f"in the JSON output. (Default: {GuardOptions.compression_ratio_threshold:g}, openai-whisper's)")
    g.add_argument("--logprob-threshold", type=logprob_flag, default=GuardOptions.logprob_threshold,
                   metavar="LP|none",
                   help="With a fallback: a hypothesis whose average log-probability per token is below this also "
                        "fails (checked where the score is the decoder's own log-probability: no CTC, no length "
                        f"bonus). (Default: {GuardOptions.logprob_threshold:g}, openai-whisper's)")
    g.add_argument("--fallback-temperatures", default=fallback_default, metavar="T,T,...|none|auto",
                   help="Decode a failed hypothesis again by sampling at these rising temperatures in turn, keeping "
                        "the first result that passes the guard (else the last, still marked); none = no fallback; "
                        "auto = 0.2,0.4,0.6,0.8,1.0 for a pretrained Whisper decoder used zero-shot (no checkpoint), "
                        f"none otherwise. (Default: {fallback_default})")
    g.add_argument("--fallback-best-of", type=int, default=DEFAULT_BEST_OF,
                   help=f"Samples per fallback temperature; the most probable is kept. (Default: {DEFAULT_BEST_OF})")


def check_guard_args(args: Any) -> None:
    """Set ``args.guard`` (:class:`GuardOptions`) and ``args.fallback`` (:class:`FallbackOptions`,
    ``None``, or ``"auto"`` to be resolved with the model: :func:`resolve_fallback`) from the
    flags; a bad value is a ``ValueError`` naming the flag."""
    args.guard = GuardOptions(args.compression_ratio_threshold, args.logprob_threshold)
    if args.fallback_best_of < 1:
        raise ValueError(f"--fallback-best-of must be >= 1, got {args.fallback_best_of}")
    if args.fallback_temperatures.strip().lower() == "auto":
        args.fallback = "auto"
        return
    temperatures = parse_temperatures(args.fallback_temperatures)
    args.fallback = None if temperatures is None else FallbackOptions(temperatures, args.fallback_best_of)


def resolve_fallback(fallback: Any, best_of: int, zero_shot_whisper: bool) -> Optional[FallbackOptions]:
    """``"auto"`` -> openai-whisper's temperatures for a zero-shot Whisper decoder, else ``None``."""
    if fallback == "auto":
        return FallbackOptions(DEFAULT_TEMPERATURES, best_of) if zero_shot_whisper else None
    return fallback
