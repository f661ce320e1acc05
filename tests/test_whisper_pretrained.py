"""The real pretrained Whisper tiny.en (../shared/models/whisper-tiny.en, float16 weights)
on speech from the project's own eSpeak generator: our Whisper pair (``--audio-encoder
whisper --decoder whisper-decoder --elayers 0``) must give Whisper's own tokens and stop
where Whisper stops. Skipped when ../shared is absent."""

import os

import pytest
import torch

from conftest import REPO

transformers = pytest.importorskip("transformers")

from espnet.asr import eval_cli  # noqa: E402

WHISPER = os.path.join(os.path.dirname(REPO), "shared", "models", "whisper-tiny.en")
EOT = 50256  # <|endoftext|>


@pytest.fixture(scope="module")
def whisper_dir():
    if not os.path.isfile(os.path.join(WHISPER, "model.safetensors")):
        pytest.skip("../shared/models/whisper-tiny.en is not available")
    return WHISPER


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Six eSpeak utterances (generated corpus) in one label list ``all.csv`` with transcripts."""
    from preparation.synthetic_av import generate, join_splits

    root = str(tmp_path_factory.mktemp("espeak"))
    paths = generate(root, num_utts=6, num_speakers=3, seed=3, progress=False, babble_seconds=20.0)
    return {"root": root, "csv": join_splits(paths)}


@pytest.fixture(scope="module")
def clips(speech):
    """Raw waveforms (1-D, 16 kHz, recorded level) and transcripts of the six utterances."""
    from datamodule.data_module import build_dataset

    dataset = build_dataset(speech["root"], speech["csv"], "test", "audio", audio_utterance_norm=False)
    items = [dataset[i] for i in range(len(dataset))]
    return [it["audio"][:, 0] for it in items], [it["text"] for it in items]


@pytest.fixture(scope="module")
def pair(whisper_dir):
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
    from flag_config import model_config

    config = model_config(odim=None, audio_encoder="whisper", audio_model_name=whisper_dir, decoder="whisper-decoder",
                          decoder_model_name=whisper_dir, elayers=0, adim=384, whisper_pad_seconds=30.0)
    return E2E(config).eval()


@pytest.fixture(scope="module")
def reference(whisper_dir):
    model = transformers.WhisperForConditionalGeneration.from_pretrained(whisper_dir, dtype=torch.float32).eval()
    return model, transformers.WhisperProcessor.from_pretrained(whisper_dir)


def _batch(waves):
    lengths = torch.tensor([w.numel() for w in waves])
    return torch.nn.utils.rnn.pad_sequence(waves, batch_first=True).unsqueeze(-1), lengths


def test_checkpoint_dtype_float16_loads_as_float32_or_bfloat16(whisper_dir, pair):
    from safetensors import safe_open

    from espnet.nets.pytorch_backend.frontend.audio.whisper import WhisperFrontend

    with safe_open(os.path.join(whisper_dir, "model.safetensors"), "pt") as f:
        stored = f.get_tensor("model.encoder.layers.0.fc1.weight")
        stored_dec = f.get_tensor("model.decoder.layers.0.fc1.weight")
    assert stored.dtype == torch.float16
    assert {p.dtype for p in pair.parameters()} == {torch.float32}
    # conversions of the stored weights (float16 -> float32 is exact, -> bfloat16 rounds to
    # nearest even): the same bits on any processor
    assert torch.equal(pair.frontend.model.layers[0].fc1.weight, stored.float())
    assert torch.equal(pair.decoder.whisper.model.decoder.layers[0].fc1.weight, stored_dec.float())
    bf16 = WhisperFrontend(whisper_dir, dtype=torch.bfloat16)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    assert torch.equal(bf16.model.layers[0].fc1.weight, stored.to(torch.bfloat16))


def test_log_mel_of_raw_audio_equals_feature_extractor(pair, reference, clips):
    waves, _ = clips
    _, processor = reference
    ref = processor.feature_extractor([w.numpy() for w in waves[:3]], sampling_rate=16000,
                                      return_tensors="pt").input_features  # (3, 80, 3000)
    x, lengths = _batch(waves[:3])
    mel = pair.frontend.mel(torch.nn.functional.pad(x[..., 0], (0, 480000 - x.size(1))), lengths)
    assert mel.shape == ref.shape and float((mel - ref).abs().max()) <= 1e-4
    real = pair.frontend.mel(x[..., 0], lengths)  # real length: the valid frames are the same
    for i, n in enumerate(lengths.tolist()):
        assert float((real[i, :, : n // 160] - ref[i, :, : n // 160]).abs().max()) <= 1e-4


@pytest.mark.parametrize("beam", [1, 4])
def test_pair_gives_whispers_own_tokens_and_stops(pair, reference, clips, beam):
    waves, transcripts = clips
    hf, processor = reference
    feats = processor.feature_extractor([w.numpy() for w in waves], sampling_rate=16000,
                                        return_tensors="pt").input_features
    with torch.no_grad():
        ref = hf.generate(feats, num_beams=beam, max_new_tokens=64, return_dict_in_generate=True).sequences.tolist()
        x, lengths = _batch(waves)
        enc, enc_len = pair.encode({"audio": x, "audio_lengths": lengths})
        batched = pair.decoder.generate_ids(enc, enc_len, beam_size=beam, max_new_tokens=64)
        single = []
        for w in waves:
            e, e_len = pair.encode({"audio": w[None, :, None], "audio_lengths": torch.tensor([w.numel()])})
            single += pair.decoder.generate_ids(e, e_len, beam_size=beam, max_new_tokens=64)
    prompt = pair.decoder.prompt_ids
    for row, ours in zip(ref, batched):
        assert row[: len(prompt)] == prompt
        assert EOT in row[len(prompt):]  # Whisper stopped ...
        assert ours == row[len(prompt): row.index(EOT, len(prompt))]  # ... and so did we, at the same token
        assert 0 < len(ours) < 40
    assert batched == single
    texts = [pair.decoder.tokenizer.decode(ids, skip_special_tokens=True) for ids in batched]
    normalize = processor.tokenizer.normalize
    # eSpeak's GRID sentences are odd English, but a good part of the words come through
    hits = sum(w in normalize(t).split() for t, ref_text in zip(texts, transcripts)
               for w in normalize(ref_text).split())
    assert hits >= 0.3 * sum(len(normalize(r).split()) for r in transcripts), texts


def test_previous_text_prompt_gives_whispers_own_tokens(pair, reference, clips):
    """Conditioned on the text before it (``<|startofprev|>``, openai-whisper's
    condition_on_previous_text), the search gives the tokens of Whisper's ``generate`` with
    the same ``prompt_ids``; an empty previous text is no prompt at all."""
    from espnet.asr.fallback import decode_guarded
    from espnet.nets.pytorch_backend.decoder.base_decoder import DecodeOptions

    waves, transcripts = clips
    hf, processor = reference
    decoder = pair.decoder
    previous = transcripts[0].capitalize() + "."
    prompt_ids = processor.get_prompt_ids(previous, return_tensors="pt")
    assert decoder.previous_ids(previous) == prompt_ids.tolist()  # <|startofprev|> + " " + text
    assert decoder.previous_ids("  ") == []
    options = DecodeOptions(beam_size=1, ctc_weight=0.0, max_new_tokens=64)
    with torch.no_grad():
        e, e_len = pair.encode({"audio": waves[1][None, :, None], "audio_lengths": torch.tensor([waves[1].numel()])})
        ours = decode_guarded(pair, e, e_len, options, previous_texts=[previous])[0]
        plain = decode_guarded(pair, e, e_len, options, previous_texts=[""])[0]
        assert plain.decoded.token_ids == decode_guarded(pair, e, e_len, options)[0].decoded.token_ids
        feats = processor.feature_extractor([waves[1].numpy()], sampling_rate=16000, return_tensors="pt").input_features
        row = hf.generate(feats, prompt_ids=prompt_ids, max_new_tokens=64).tolist()[0]
    assert EOT in row or len(row) < 64
    assert ours.decoded.token_ids == [t for t in row if t != EOT]
    assert not ours.check.failed and ours.text
    with pytest.raises(ValueError, match="decoded one at a time"):
        with decoder.condition_on(["one two", "three four five six"]):
            pass


def test_zero_shot_eval_without_checkpoint(whisper_dir, speech, clips, reference, capsys, tmp_path):
    """eval.py from model flags alone decodes exactly what Whisper transcribes, and scores it."""
    import json

    from espnet.asr.evaluate import corpus_wer, text_normalizer

    waves, transcripts = clips
    hf, processor = reference
    feats = processor.feature_extractor([w.numpy() for w in waves], sampling_rate=16000,
                                        return_tensors="pt").input_features
    with torch.no_grad():
        whisper_texts = [t.strip() for t in processor.batch_decode(hf.generate(feats), skip_special_tokens=True)]
    model = ["--audio-encoder", "whisper", "--audio-model-name", whisper_dir, "--decoder", "whisper-decoder",
             "--decoder-model-name", whisper_dir, "--adim", "384"]
    common = ["--root-dir", speech["root"], "--test-file", speech["csv"], "--beam-size", "1", "--num-workers", "0",
              "--accelerator", "cpu"]
    out = str(tmp_path / "zero_shot.json")
    code = eval_cli.main(common + model + ["--elayers", "0", "--whisper-pad-30s", "--wer-normalizer", "whisper",
                                           "--output-json", out])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    wer = float(captured.out.strip().splitlines()[-1].split("WER: ")[1])
    with open(out, encoding="utf8") as handle:
        rows = json.load(handle)["utterances"]
    assert [r["hypothesis"] for r in rows] == whisper_texts and [r["reference"] for r in rows] == transcripts
    expected = corpus_wer(transcripts, whisper_texts, text_normalizer("whisper", [whisper_dir]))["wer"]
    assert wer == pytest.approx(expected, abs=1e-12) and 0.0 < wer < 1.0
    # a Conformer on top is not pretrained: refused, naming it
    code = eval_cli.main(common + model + ["--elayers", "1", "--aheads", "4"])
    assert code == 2
    err = capsys.readouterr().err
    assert "without --pretrained-model-path every part of the model must be pretrained" in err
    assert "not: encoder;" in err


def test_noise_is_added_at_the_recorded_level(speech, clips):
    """Pretrained audio frontends get the waveform unnormalised; babble at 0 dB SNR is added to it."""
    from datamodule.data_module import build_dataset

    clean, _ = clips
    noisy = build_dataset(speech["root"], speech["csv"], "test", "audio", snr_target=0.0, seed=1,
                          audio_utterance_norm=False)[0]["audio"][:, 0]
    noise = noisy - clean[0]
    ratio = float(clean[0].pow(2).mean() / noise.pow(2).mean())
    assert abs(10 * torch.log10(torch.tensor(ratio))) < 0.01  # 0 dB
    normed = build_dataset(speech["root"], speech["csv"], "test", "audio")[0]["audio"][:, 0]
    assert abs(float(normed.std()) - 1.0) < 1e-3 and float(clean[0].abs().max()) < 1.0  # legacy: layer-normed


def test_residual_av_model_starts_as_the_whisper_pair(whisper_dir, speech, clips):
    """An audio-visual model with ``--fusion-type residual`` (lips from a new ResNet) gives,
    before any training, exactly the Whisper pair's encoder output and tokens (real-length
    input): fine-tuning starts from the working audio model."""
    from datamodule.collate import collate_pad
    from datamodule.data_module import build_dataset
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
    from flag_config import model_config

    common = dict(odim=None, audio_encoder="whisper", audio_model_name=whisper_dir, decoder="whisper-decoder",
                  decoder_model_name=whisper_dir, elayers=0, adim=384)
    torch.manual_seed(0)
    pair = E2E(model_config(**common)).eval()
    av = E2E(model_config(vision_encoder="resnet", resnet_width=4, fusion_type="residual", **common)).eval()
    dataset = build_dataset(speech["root"], speech["csv"], "test", "audiovisual", audio_utterance_norm=False)
    batch = collate_pad([dataset[i] for i in range(3)])
    audio = {"audio": batch["audios"], "audio_lengths": batch["audio_lengths"]}
    assert torch.equal(audio["audio"][0, : clips[0][0].numel(), 0], clips[0][0])  # the recorded level
    with torch.no_grad():
        a_enc, a_len = pair.encode(audio)
        av_enc, av_len = av.encode({"video": batch["videos"], "video_lengths": batch["video_lengths"], **audio})
        # the same Whisper encoder on the same batch, plus the closed gate's exact zeros: bit for bit
        assert torch.equal(av_len, a_len) and torch.equal(av_enc, a_enc)
        ids = pair.decoder.generate_ids(a_enc, a_len, beam_size=1, max_new_tokens=24)
        assert av.decoder.generate_ids(av_enc, av_len, beam_size=1, max_new_tokens=24) == ids
    assert all(len(row) > 0 for row in ids)
