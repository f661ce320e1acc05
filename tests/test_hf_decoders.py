"""Pretrained HF decoders with their own tokenizers (issue #6): tiny random LLaMA and
Whisper models built from configs, tokenizers trained here with ``tokenizers``, saved
with ``save_pretrained`` into tmp dirs and loaded offline."""

import os

import pytest
import torch

from conftest import TINY_ENCODER_DIMS

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from espnet.asr import eval_cli  # noqa: E402
from espnet.training import train_cli  # noqa: E402
from tiny_hf import TEXTS, save_tiny_llama, save_tiny_whisper  # noqa: E402

@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return save_tiny_llama(str(tmp_path_factory.mktemp("tiny_llama")))


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    return save_tiny_whisper(str(tmp_path_factory.mktemp("tiny_whisper")))


def _config(decoder, name, **kw):
    from flag_config import model_config

    base = dict(odim=10, vision_encoder=None, audio_encoder="resnet1d", adim=32, aheads=2, eunits=64,
                elayers=1, decoder=decoder, decoder_model_name=name, dropout_rate=0.0, mask_conv_padding=True)
    base.update(kw)
    if base["audio_encoder"] == "resnet1d":
        base["resnet_width"] = 8
    return model_config(**base)


def _decoder(decoder, name, **kw):
    from espnet.nets.pytorch_backend.factories.decoder_factory import DecoderFactory

    torch.manual_seed(0)
    return DecoderFactory.create_decoder(decoder, _config(decoder, name, **kw)).eval()


@pytest.mark.parametrize("kind", ["llama", "whisper-decoder"])
def test_loss_decreases(kind, llama_dir, whisper_dir):
    dec = _decoder(kind, llama_dir if kind == "llama" else whisper_dir)
    dec.train()
    torch.manual_seed(1)
    mem, lens = torch.randn(2, 7, 32), torch.tensor([7, 5])
    texts = ["bin blue at one", "lay green"]
    opt = torch.optim.Adam(dec.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        out = dec.forward_train(mem, lens, None, texts=texts)
        opt.zero_grad()
        out["loss_att"].backward()
        opt.step()
        losses.append(float(out["loss_att"].detach()))
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("kind", ["llama", "whisper-decoder"])
def test_bf16_weights(kind, llama_dir, whisper_dir):
    dec = _decoder(kind, llama_dir if kind == "llama" else whisper_dir, pretrained_dtype="bfloat16")
    hf = dec.llm if kind == "llama" else dec.whisper
    assert next(hf.parameters()).dtype == torch.bfloat16
    out = dec.forward_train(torch.randn(1, 5, 32), torch.tensor([5]), None, texts=["bin blue"])
    assert torch.isfinite(out["loss_att"])


def test_whisper_decoder_qlora(whisper_dir):
    """--use-qlora on the Whisper decoder: its linear layers except proj_out become 4-bit,
    adapters on the attention projections learn, generate still works."""
    bnb = pytest.importorskip("bitsandbytes")
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E

    torch.manual_seed(0)
    model = E2E(_config("whisper-decoder", whisper_dir, use_qlora=True, qlora_dropout=0.0)).train()
    whisper = model.decoder.whisper
    assert type(whisper.proj_out) is torch.nn.Linear and not whisper.proj_out.weight.requires_grad
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in whisper.modules()) == 10  # self 4 + cross 4 + fc1, fc2
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    inputs = {"audio": torch.randn(2, 6400, 1), "audio_lengths": torch.tensor([6400, 4480])}
    losses = []
    for _ in range(6):
        loss, *_ = model(inputs, torch.zeros(2, 1, dtype=torch.long), texts=TEXTS[:2])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses
    model.eval()
    assert len(model.decoder.generate_ids(*model.encode(inputs), max_new_tokens=3)) == 2


def test_llama_loss_counts_target_tokens_only(llama_dir):
    dec = _decoder("llama", llama_dir)
    mem, lens = torch.randn(2, 6, 32), torch.tensor([6, 4])
    texts = ["bin blue", "set white with four"]
    _, _, labels = dec.build_train_batch(mem, lens, texts)
    for i, text in enumerate(texts):
        counted = labels[i][labels[i] != -100].tolist()
        assert counted == dec.text_ids(text) + [dec.eos_id]
    n_a = [int(x) for x in (labels != -100).sum(1)]
    dec.prompt_ids = dec.text_ids("a much longer instruction that says something else entirely")
    _, _, labels2 = dec.build_train_batch(mem, lens, texts)
    assert [int(x) for x in (labels2 != -100).sum(1)] == n_a
    for i, text in enumerate(texts):
        assert labels2[i][labels2[i] != -100].tolist() == dec.text_ids(text) + [dec.eos_id]


@pytest.mark.parametrize("kind", ["llama", "whisper-decoder"])
def test_per_utterance_loss_is_padding_invariant(kind, llama_dir, whisper_dir):
    options = {"llm_downsample": 2} if kind == "llama" else {}
    dec = _decoder(kind, llama_dir if kind == "llama" else whisper_dir, **options)
    torch.manual_seed(2)
    mem = torch.randn(3, 9, 32)
    lens = torch.tensor([9, 4, 6])
    texts = ["bin blue at one now", "lay", "place red in"]
    with torch.no_grad():
        batch = dec.forward_train(mem, lens, None, texts=texts)["loss_per_utt"]
        for i in range(3):
            alone = dec.forward_train(mem[i:i + 1, : int(lens[i])], lens[i:i + 1], None, texts=[texts[i]])
            torch.testing.assert_close(batch[i], alone["loss_per_utt"][0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["llama", "whisper-decoder"])
def test_batched_generate_equals_per_utterance(kind, llama_dir, whisper_dir):
    dec = _decoder(kind, llama_dir if kind == "llama" else whisper_dir)
    torch.manual_seed(3)
    mem, lens = torch.randn(3, 8, 32), torch.tensor([8, 3, 5])
    for beam in (1, 2):
        batched = dec.generate_ids(mem, lens, beam_size=beam, max_new_tokens=8)
        single = [dec.generate_ids(mem[i:i + 1, : int(lens[i])], lens[i:i + 1], beam_size=beam, max_new_tokens=8)[0]
                  for i in range(3)]
        assert batched == single


@pytest.mark.parametrize("kind", ["llama", "whisper-decoder"])
def test_recognize_batch_equals_one_at_a_time(kind, llama_dir, whisper_dir):
    """eval.py's path: utterances of mixed lengths encoded (equal lengths together) and
    generated in one batch give the texts they give alone."""
    from espnet.asr.recognizer import DecodeOptions, transcribe
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E

    torch.manual_seed(5)
    model = E2E(_config(kind, llama_dir if kind == "llama" else whisper_dir)).eval()
    items = [{"audio": torch.randn(n * 640, 1)} for n in (9, 4, 9, 6)]
    for beam in (1, 2):
        options = DecodeOptions(beam_size=beam, max_new_tokens=6)
        batched = transcribe(model, items, options)
        alone = [transcribe(model, [item], options)[0] for item in items]
        assert batched == alone
        if kind == "llama":  # (the tiny random Whisper decoder writes the same text for any input)
            assert len(set(batched)) > 1


def test_whisper_pair_reproduces_pretrained_generate(whisper_dir):
    """Tiny random Whisper (its whole input window is 4 s): the pair gives what the HF model
    gives on its feature extractor's input (its encoder, then its generate), token for token,
    greedy and beam search (no eos from random weights: both stop at max_new_tokens). The real
    pretrained model, whose generate is also fed the features directly, is checked in
    test_whisper_pretrained.py."""
    from transformers.modeling_outputs import BaseModelOutput

    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E

    config = _config("whisper-decoder", whisper_dir, audio_encoder="whisper", audio_model_name=whisper_dir,
                     elayers=0, whisper_pad_seconds=30.0)
    model = E2E(config).eval()
    assert model.encoder is None and model.proj_encoder.mode == "identity" and model.decoder.proj.mode == "identity"
    hf = transformers.WhisperForConditionalGeneration.from_pretrained(whisper_dir).eval()
    fe = transformers.WhisperFeatureExtractor.from_pretrained(whisper_dir, n_samples=64000, nb_max_frames=400,
                                                                chunk_length=4)
    torch.manual_seed(4)
    wave = 0.1 * torch.randn(2, 16000, 1)
    lengths = torch.tensor([15000, 11000])  # shorter than the window: zeros follow both (as in 30 s use)
    feats = fe([wave[i, :n, 0].numpy() for i, n in enumerate(lengths.tolist())], sampling_rate=16000,
               return_tensors="pt")
    for beam in (1, 3):
        with torch.no_grad():
            enc, enc_len = model.encode({"audio": wave, "audio_lengths": lengths})
            ours = model.decoder.generate_ids(enc, enc_len, beam_size=beam, max_new_tokens=12)
            hf_enc = BaseModelOutput(last_hidden_state=hf.model.encoder(feats.input_features).last_hidden_state)
            # one short-form pass (without an eos, Whisper's generate would go on seeking)
            ref = hf.generate(encoder_outputs=hf_enc, language="en", task="transcribe", num_beams=beam,
                              max_new_tokens=12, return_dict_in_generate=True, force_unique_generate_call=True).sequences
        prompt = len(model.decoder.prompt_ids)
        assert ours == [row[prompt:] for row in ref.tolist()] and all(len(r) == 12 for r in ours)


def test_missing_model_is_a_clear_error(toy_corpus, capsys):
    code = train_cli.main(["--root-dir", toy_corpus["root"], "--train-file", "train.csv", "--vision-encoder", "resnet",
                           "--decoder", "llama", "--decoder-model-name", "/nonexistent/llama",
                           "--sp-model-path", toy_corpus["sp_model_path"], "--dict-path", toy_corpus["dict_path"]])
    assert code == 2
    assert "cannot load the LLaMA decoder '/nonexistent/llama' (given by --decoder-model-name)" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["llama", "whisper-decoder"])
def test_train_and_eval_cli(kind, toy_corpus, llama_dir, whisper_dir, tmp_path, capsys):
    name = llama_dir if kind == "llama" else whisper_dir
    encoder = ["--vision-encoder", "resnet"] if kind == "llama" else ["--audio-encoder", "resnet1d"]
    exp = str(tmp_path / "exp")
    code = train_cli.main(["--exp-dir", exp, "--exp-name", "run", "--root-dir", toy_corpus["root"],
                           "--train-file", "train.csv", *encoder, "--resnet-width", "8", "--decoder", kind,
                           "--decoder-model-name", name, "--sp-model-path", toy_corpus["sp_model_path"],
                           "--dict-path", toy_corpus["dict_path"], *TINY_ENCODER_DIMS, "--max-epochs", "1",
                           "--warmup-epochs", "1", "--max-frames", "300", "--num-workers", "0",
                           *(["--llm-downsample", "2"] if kind == "llama" else []), "--accelerator", "cpu"])
    assert code == 0
    avg = os.path.join(exp, "run", "model_avg_1.pth")
    assert os.path.isfile(avg)
    capsys.readouterr()
    code = eval_cli.main(["--root-dir", toy_corpus["root"], "--test-file", "test.csv", "--pretrained-model-path", avg,
                          "--beam-size", "2", "--max-new-tokens", "4", "--num-workers", "0", "--accelerator", "cpu"])
    assert code == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("WER: ")


def test_audio_visual_residual_fusion_starts_as_the_whisper_pair(whisper_dir):
    """--fusion-type residual keeps the audio stream at its 50 Hz and adds the lips through a
    closed gate: an untrained audio-visual model transcribes exactly as the Whisper pair."""
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E

    pair = dict(audio_encoder="whisper", audio_model_name=whisper_dir, elayers=0)
    audio_only = E2E(_config("whisper-decoder", whisper_dir, **pair)).eval()
    torch.manual_seed(0)
    av = E2E(_config("whisper-decoder", whisper_dir, vision_encoder="resnet", resnet_width=4,
                     fusion_type="residual", **pair)).eval()
    av.decoder.load_state_dict(audio_only.decoder.state_dict())
    frames = torch.tensor([20, 14])
    inputs = {"audio": 0.1 * torch.randn(2, 20 * 640, 1), "audio_lengths": frames * 640,
              "video": torch.randn(2, 20, 1, 88, 88), "video_lengths": frames}
    with torch.no_grad():
        mem_a, len_a = audio_only.encode(inputs)
        mem_av, len_av = av.encode(inputs)
        assert torch.equal(len_av, len_a) and torch.equal(mem_av, mem_a)  # 50 Hz audio frames, unchanged
        assert av.decoder.generate_ids(mem_av, len_av, max_new_tokens=6) == \
            audio_only.decoder.generate_ids(mem_a, len_a, max_new_tokens=6)
