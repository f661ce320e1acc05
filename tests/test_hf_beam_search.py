"""The LLaMA and Whisper decoders as batch scorers of the one joint CTC/attention beam search
(tiny random models built as in test_hf_decoders.py; the search is fed encoder outputs
directly). A random decoder rarely emits its end token, so every search here ends at
``--max-new-tokens``."""

import math

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from espnet.asr.recognizer import DecodeOptions, build_beam_search, decode_memory  # noqa: E402
from tiny_hf import save_tiny_llama, save_tiny_whisper  # noqa: E402

KINDS = ["llama", "whisper-decoder"]
MAX_NEW = 6


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """An E2E model per decoder kind (its CTC head over the decoder's vocabulary; trained
    with ``ctc_weight`` 0.1, so joint decoding uses it)."""
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
    from flag_config import model_config

    out = {}
    for kind, save in (("llama", save_tiny_llama), ("whisper-decoder", save_tiny_whisper)):
        name = save(str(tmp_path_factory.mktemp(kind)))
        config = model_config(odim=None, vision_encoder=None, audio_encoder="resnet1d", resnet_width=8, adim=32,
                              aheads=2, eunits=64, elayers=1, decoder=kind, decoder_model_name=name, dropout_rate=0.0)
        torch.manual_seed(0)
        out[kind] = E2E(config).eval()
    return out


def _memory(seed=3):
    torch.manual_seed(seed)
    return torch.randn(3, 8, 32), torch.tensor([8, 3, 5])


def _hyps(model, memory, lengths, beam, ctc_weight, penalty=0.0):
    """The search's best ``(yseq, score)`` of each utterance."""
    options = DecodeOptions(beam_size=beam, ctc_weight=ctc_weight, max_new_tokens=MAX_NEW, penalty=penalty)
    search = build_beam_search(model, beam, ctc_weight, penalty)
    with torch.no_grad():
        nbest = search.batch_forward(memory, lengths, model.decoder.max_length_ratio(options))
    return [(hyps[0].yseq.tolist(), hyps[0].score) for hyps in nbest]


def _decoder_log_probs(decoder, memory, tokens):
    """Teacher-forced log-probabilities ``(len(tokens), V)`` of each token of one utterance
    (memory ``(T, D)``, no padding) in one full forward pass, without a cache."""
    with torch.no_grad():
        if hasattr(decoder, "llm"):
            soft, n = decoder.soft_prompt(memory[None], torch.tensor([memory.size(0)]))
            prompt = decoder.prompt_pieces(soft[0], int(n[0]), memory.device)
            x = torch.cat([prompt, decoder._embed(tokens, memory.device)])[None] if tokens else prompt[None]
            logits = decoder.llm(inputs_embeds=x).logits[0]
            start = prompt.size(0) - 1
        else:
            ids = torch.tensor([decoder.prompt_ids + tokens])
            hidden = decoder.whisper.model.decoder(input_ids=ids, encoder_hidden_states=decoder.project(memory[None]),
                                                   use_cache=False).last_hidden_state
            logits = decoder.whisper.proj_out(hidden)[0]
            start = len(decoder.prompt_ids) - 1
    return torch.log_softmax(logits.float(), -1)[start: start + len(tokens) + 1]


def _next_log_probs(decoder, memory):
    """``(V, V)``: row ``c`` = the log-probabilities after the one-token hypothesis ``c``, all
    ``V`` hypotheses in one full forward pass (as :func:`_decoder_log_probs`, batched)."""
    vocab = decoder.search_vocab_size
    tokens = torch.arange(vocab)
    with torch.no_grad():
        if hasattr(decoder, "llm"):
            soft, n = decoder.soft_prompt(memory[None], torch.tensor([memory.size(0)]))
            prompt = decoder.prompt_pieces(soft[0], int(n[0]), memory.device)
            x = torch.cat([prompt.expand(vocab, -1, -1), decoder._embed(tokens.tolist(), memory.device)[:, None]], 1)
            logits = decoder.llm(inputs_embeds=x).logits[:, -1]
        else:
            ids = torch.cat([torch.tensor(decoder.prompt_ids).expand(vocab, -1), tokens[:, None]], 1)
            mem = decoder.project(memory[None]).expand(vocab, -1, -1)
            hidden = decoder.whisper.model.decoder(input_ids=ids, encoder_hidden_states=mem,
                                                   use_cache=False).last_hidden_state
            logits = decoder.whisper.proj_out(hidden[:, -1])
    return torch.log_softmax(logits.float(), -1)


def _ctc_prefix_log_prob(logp, labels):
    """log P(the CTC output of ``logp`` ``(T, C)`` (blank 0) starts with ``labels``): the sum
    over the frame ``t`` where the last label is first emitted, with the forward variables
    of the labels before it (plain CTC forward algorithm over the blank-interleaved labels)."""
    head, last = labels[:-1], labels[-1]
    frames = logp.size(0)
    ext = [0]
    for label in head:
        ext += [label, 0]
    alpha = torch.full((frames, len(ext)), -math.inf, dtype=torch.float64)
    alpha[0, 0] = logp[0, 0]
    if len(ext) > 1:
        alpha[0, 1] = logp[0, ext[1]]
    for t in range(1, frames):
        for s, label in enumerate(ext):
            paths = [alpha[t - 1, s]] + ([alpha[t - 1, s - 1]] if s >= 1 else [])
            if s >= 2 and label != 0 and label != ext[s - 2]:
                paths.append(alpha[t - 1, s - 2])
            alpha[t, s] = torch.logsumexp(torch.stack(paths), 0) + logp[t, label]
    total = []
    for t in range(frames):
        if t == 0:
            before = 0.0 if not head else -math.inf
        else:
            ends = [alpha[t - 1, -1]]  # after a blank
            if head and head[-1] != last:  # right after the last label of head (not a repeat)
                ends.append(alpha[t - 1, -2])
            before = float(torch.logsumexp(torch.stack(ends), 0)) if head else float(alpha[t - 1, 0])
        total.append(before + float(logp[t, last]))
    return float(torch.logsumexp(torch.tensor(total, dtype=torch.float64), 0))


@pytest.mark.parametrize("kind", KINDS)
def test_beam_1_without_ctc_is_greedy_generate(kind, models):
    """Beam 1, no CTC: exactly the ids of the model's own greedy ``generate``, in one batch."""
    model = models[kind]
    memory, lengths = _memory()
    with torch.no_grad():
        reference = model.decoder.generate_ids(memory, lengths, beam_size=1, max_new_tokens=MAX_NEW)
        ours = decode_memory(model, memory, lengths, DecodeOptions(beam_size=1, ctc_weight=0.0,
                                                                   max_new_tokens=MAX_NEW))
    assert [hyp.token_ids for hyp in ours] == reference
    assert all(len(ids) >= 1 for ids in reference)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ctc_weight,penalty", [(0.0, 0.0), (0.3, 0.5)])
def test_best_score_is_the_full_forward_score(kind, ctc_weight, penalty, models):
    """Beam 3: the best hypothesis' score equals its score recomputed without the cache: the
    decoder's teacher-forced log-probabilities, the CTC log-probability of the tokens (of the
    whole sequence when it ended with eos, else of the prefix) and the length bonus."""
    model = models[kind]
    decoder = model.decoder
    memory, lengths = _memory()
    best = _hyps(model, memory, lengths, 3, ctc_weight, penalty)
    for i, (yseq, score) in enumerate(best):
        frames = int(lengths[i])
        assert yseq[0] == decoder.sos and yseq[-1] == decoder.eos
        tokens = yseq[1:-1]
        # eos chosen (scored), not only appended at the length limit (chosen at the limit: both)
        ended = len(tokens) < MAX_NEW or tokens[-1] == decoder.eos
        if tokens and tokens[-1] == decoder.eos:
            tokens = tokens[:-1]
        logp = _decoder_log_probs(decoder, memory[i, :frames], tokens)
        att = sum(float(logp[j, t]) for j, t in enumerate(tokens)) + (float(logp[len(tokens), decoder.eos]) if ended else 0)
        expected = (1 - ctc_weight) * att + penalty * (len(tokens) + int(ended))
        if ctc_weight:
            ctc_logp = model.ctc.log_softmax(memory[i:i + 1, :frames])[0].detach().double()
            labels = [t + 1 for t in tokens]
            if ended:
                ctc = -float(torch.nn.functional.ctc_loss(ctc_logp[:, None], torch.tensor([labels]), [frames],
                                                         [len(labels)], blank=0, reduction="sum"))
            else:
                ctc = _ctc_prefix_log_prob(ctc_logp, labels)
            expected += ctc_weight * ctc
        assert score == pytest.approx(expected, abs=2e-3), (i, tokens)


@pytest.mark.parametrize("kind", KINDS)
def test_full_beam_finds_the_best_hypothesis_greedy_may_miss(kind, models):
    """With as many beams as tokens and at most 2 tokens, the search is exhaustive: its best
    hypothesis is the best of all (eos, c eos, c d) by the decoder's full-forward scores,
    hence at least as good as greedy's. (With fewer beams than that, beam search may lose
    to greedy on these near-uniform random models: short hypotheses score higher.)"""
    model = models[kind]
    decoder = model.decoder
    vocab, eos = decoder.search_vocab_size, decoder.eos
    memory, lengths = _memory(seed=11)
    options = DecodeOptions(beam_size=vocab, ctc_weight=0.0, max_new_tokens=2)
    with torch.no_grad():
        full = decode_memory(model, memory, lengths, options)
        greedy = decode_memory(model, memory, lengths, DecodeOptions(beam_size=1, ctc_weight=0.0, max_new_tokens=2))
    for i in range(3):
        mem = memory[i, : int(lengths[i])]
        first = _decoder_log_probs(decoder, mem, [])[0]
        second = _next_log_probs(decoder, mem)  # (V, V): after each first token
        best_score, best_ids = float(first[eos]), []
        for c in range(vocab):
            if c == eos:
                continue
            d = int(second[c].argmax())
            if float(first[c] + second[c, d]) > best_score:
                best_score, best_ids = float(first[c] + second[c, d]), [c] if d == eos else [c, d]
        assert full[i].token_ids == best_ids
        assert full[i].score == pytest.approx(best_score, abs=1e-4)
        assert full[i].score >= greedy[i].score - 1e-5


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ctc_weight", [0.0, 0.3])
def test_batched_equals_one_at_a_time(kind, ctc_weight, models):
    """Utterances of different lengths decoded together (finishing at different steps) get
    the ids they get alone, and the same scores."""
    model = models[kind]
    memory, lengths = _memory(seed=7)
    options = DecodeOptions(beam_size=3, ctc_weight=ctc_weight, max_new_tokens=MAX_NEW)
    with torch.no_grad():
        batched = decode_memory(model, memory, lengths, options)
        alone = [decode_memory(model, memory[i:i + 1, : int(lengths[i])], lengths[i:i + 1], options)[0]
                 for i in range(3)]
    assert [h.token_ids for h in batched] == [h.token_ids for h in alone]
    for b, a in zip(batched, alone):
        assert b.score == pytest.approx(a.score, abs=1e-4)


def test_ctc_head_of_another_vocabulary_is_refused(models):
    from espnet.nets.pytorch_backend.ctc import CTC

    model = models["llama"]
    kept = model.ctc
    model.ctc = CTC(kept.ctc_lo.out_features - 2, 32)
    try:
        with pytest.raises(ValueError, match=r"--ctc-weight 0.3: the CTC head predicts \d+ classes but the decoder's "
                                             r"vocabulary needs \d+ \(blank included\)"):
            build_beam_search(model, 2, 0.3)
        assert "ctc" not in build_beam_search(model, 2, 0.0).scorers  # without CTC it decodes
    finally:
        model.ctc = kept


def test_untrained_ctc_head_is_left_out_with_a_warning(models):
    """A model trained with ctc_weight 0 has a random CTC head: decoding warns and goes on
    with the decoder alone (what --ctc-weight 0 gives)."""
    model = models["whisper-decoder"]
    memory, lengths = _memory()
    options = DecodeOptions(beam_size=2, ctc_weight=0.5, max_new_tokens=MAX_NEW)
    with torch.no_grad():
        used = decode_memory(model, memory, lengths, options)
        model.ctc_weight = 0.0
        try:
            with pytest.warns(UserWarning, match="this model's CTC head was not trained"):
                untrained = decode_memory(model, memory, lengths, options)
        finally:
            model.ctc_weight = 0.1
        alone = decode_memory(model, memory, lengths, DecodeOptions(beam_size=2, ctc_weight=0.0,
                                                                    max_new_tokens=MAX_NEW))
    assert [h.score for h in untrained] == pytest.approx([h.score for h in alone], abs=1e-5)
    assert [h.score for h in used] != pytest.approx([h.score for h in alone], abs=1e-3)


def test_decoder_with_its_own_search_is_dispatched(models):
    """``decodes_itself``: the recognizer calls the decoder's ``recognize`` (with the CTC head
    when it is used) instead of the beam search, which refuses it."""
    from espnet.nets.pytorch_backend.decoder.base_decoder import Decoded

    model = models["llama"]
    calls = []

    def recognize(memory, lengths, ctc, options):
        calls.append((tuple(memory.shape), lengths.tolist(), ctc is model.ctc, options.beam_size))
        return [Decoded([7, 8]) for _ in range(memory.size(0))]

    model.decoder.decodes_itself = True
    model.decoder.recognize = recognize
    try:
        memory, lengths = _memory()
        out = decode_memory(model, memory, lengths, DecodeOptions(beam_size=4, ctc_weight=0.2))
        with pytest.raises(ValueError, match="decodes by its own search"):
            build_beam_search(model, 2, 0.0)
    finally:
        del model.decoder.decodes_itself, model.decoder.recognize
    assert [h.token_ids for h in out] == [[7, 8]] * 3
    assert calls == [((3, 8, 32), [8, 3, 5], True, 4)]


@pytest.mark.parametrize("kind", KINDS)
def test_stopping_at_the_best_finished_hypothesis_keeps_the_best(kind, models):
    """Without a positive length bonus the search stops an utterance once its best finished
    hypothesis beats every running one: the best hypothesis is the one of a search that runs
    to --max-new-tokens, with fewer hypotheses finished on the way."""
    model = models[kind]
    memory, lengths = _memory(seed=5)
    options = DecodeOptions(beam_size=4, ctc_weight=0.3, max_new_tokens=12)
    results = {}
    for stop in (True, False):
        search = build_beam_search(model, 4, 0.3)
        assert search.stop_at_best_ended
        search.stop_at_best_ended = stop
        with torch.no_grad():
            results[stop] = search.batch_forward(memory, lengths, model.decoder.max_length_ratio(options))
    for early, full in zip(results[True], results[False]):
        assert early[0].yseq.tolist() == full[0].yseq.tolist()
        assert early[0].score == pytest.approx(full[0].score, abs=1e-5)
        assert len(early) <= len(full)
    if kind == "llama":  # (the random Whisper's 4 hypotheses all end before the limit either way)
        assert sum(map(len, results[True])) < sum(map(len, results[False]))
    assert not build_beam_search(model, 4, 0.3, penalty=0.5).stop_at_best_ended
