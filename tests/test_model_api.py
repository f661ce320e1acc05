"""The public model API: ``Recognizer.from_pretrained`` on every format the project reads,
``save_pretrained`` round trips, and ``transcribe`` of a clip path equals decoding the same
utterance as the dataset loads it."""

import os

import pytest
import torch

from bad_corpus import BadCorpus, write_untrained_model
from conftest import REPO
from espnet.asr.pretrained import Recognizer, parse_model_flags


@pytest.fixture
def corpus(toy_corpus, tmp_path):
    return BadCorpus(toy_corpus, str(tmp_path / "root"))


def first_test_utterance(corpus, modality):
    """The first test utterance as the dataset gives it (test transforms) and its clip path."""
    from datamodule.data_module import build_dataset

    dataset = build_dataset(corpus.root, "test.csv", "test", modality)
    item = dataset[0]
    return {k: item[k] for k in ("video", "audio") if k in item}, dataset.media_path(0)


@pytest.mark.parametrize("modality", ["audio", "audiovisual"])
def test_averaged_model_with_sidecar_and_its_export_round_trip(corpus, tmp_path, modality):
    path = write_untrained_model(corpus, str(tmp_path / "model_avg_1.pth"), modality=modality)
    rec = Recognizer.from_pretrained(path)
    assert rec.model.modality == modality and rec.tokenizer is not None
    inputs, clip = first_test_utterance(corpus, modality)
    by_path = rec.recognize_batch([clip], beam_size=3)[0]
    by_dataset = rec.recognize_batch([inputs], beam_size=3)[0]
    assert by_path.token_ids == by_dataset.token_ids  # one clip loader: the same inputs
    assert by_path.score == pytest.approx(by_dataset.score, rel=1e-5, abs=1e-4)
    assert rec.transcribe(clip, beam_size=3) == rec.model.decoder.ids_to_text(by_path.token_ids, rec.tokenizer)

    out = rec.save_pretrained(str(tmp_path / "exported"))
    assert sorted(os.listdir(out)) == ["README.md", "config.json", "model.safetensors",
                                       *sorted(os.path.basename(p) for p in (corpus.toy["sp_model_path"],
                                                                             corpus.toy["dict_path"]))]
    again = Recognizer.from_pretrained(out)
    for key, value in rec.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[key], value), key  # a file round trip: copies, exact
    assert again.transcribe_batch([clip, clip], beam_size=3) == [rec.transcribe(clip, beam_size=3)] * 2


def test_lightning_checkpoint(corpus, tmp_path):
    """What train.py writes: ``model.*`` keys, hyper-parameters with the config and tokenizer."""
    import pytorch_lightning

    from espnet.training.checkpoints import load_checkpoint

    avg = write_untrained_model(corpus, str(tmp_path / "model_avg_1.pth"))
    state, config, meta = load_checkpoint(avg)
    ckpt = str(tmp_path / "epoch=0.ckpt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "model_config": config,
                "hyper_parameters": {"model_config": config, "sp_model_path": meta["sp_model_path"],
                                     "dict_path": meta["dict_path"]},
                "pytorch-lightning_version": pytorch_lightning.__version__}, ckpt)
    inputs, clip = first_test_utterance(corpus, "audio")
    assert Recognizer.from_pretrained(ckpt).transcribe(clip, beam_size=2) == \
        Recognizer.from_pretrained(avg).transcribe(inputs, beam_size=2)


def test_a_flag_that_contradicts_the_checkpoint_and_an_unknown_flag(corpus, tmp_path):
    path = write_untrained_model(corpus, str(tmp_path / "model_avg_1.pth"))
    with pytest.raises(ValueError, match=r"--adim 48 contradicts the .*model_avg_1.pth"):
        Recognizer.from_pretrained(path, flags=["--adim", "48"])
    with pytest.raises(ValueError, match=r"unknown model flag\(s\): --no-such-flag"):
        Recognizer.from_pretrained(path, flags=["--no-such-flag"])
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nowhere.pth"):
        Recognizer.from_pretrained(str(tmp_path / "nowhere.pth"))


@pytest.mark.parametrize("modality", ["video", "audio"])
def test_legacy_auto_avsr_checkpoint_decodes_as_the_original(legacy_dir, legacy_config, legacy_spm, modality):
    """An original Auto-AVSR .pth with its tokenizer and sizes: the best hypothesis of the
    original code's beam search (beam 5), token for token."""
    reference = torch.load(os.path.join(legacy_dir, f"tiny_{modality}_reference.pt"), weights_only=True)
    sizes = [f"--{k}={legacy_config[k]}" for k in ("adim", "aheads", "eunits", "elayers", "dunits", "dlayers")]
    encoder = ["--vision-encoder", "resnet"] if modality == "video" else ["--audio-encoder", "resnet1d"]
    assert legacy_config["cnn_module_kernel"] == 31  # the Conformer's default (no flag)
    flags = [*encoder, *sizes, "--sp-model-path", legacy_spm[0], "--dict-path", legacy_spm[1]]
    rec = Recognizer.from_pretrained(os.path.join(legacy_dir, f"tiny_{modality}.pth"), flags=flags)
    length = int(reference["lengths"][0])
    x = reference["input"][0, :length]
    hyp = rec.recognize_batch([{modality: x}], beam_size=5, ctc_weight=0.1)[0]
    eos = legacy_config["odim"] - 1
    assert hyp.token_ids == [int(t) for t in reference["beam5_ids"] if int(t) != eos]
    assert hyp.score == pytest.approx(float(reference["beam5_score"]), rel=1e-4, abs=1e-3)


WHISPER = os.path.join(os.path.dirname(REPO), "shared", "models", "whisper-tiny.en")


def test_fully_pretrained_model_from_flags_transcribes_a_wav(tmp_path):
    """No checkpoint: the real Whisper tiny.en given by flags (zero-shot) transcribes eSpeak
    speech; a clip path gives what the dataset's loading of the same utterance gives."""
    if not os.path.isfile(os.path.join(WHISPER, "model.safetensors")):
        pytest.skip("../shared/models/whisper-tiny.en is not available")
    from datamodule.data_module import build_dataset
    from espnet.asr.evaluate import corpus_wer
    from preparation.synthetic_av import generate

    paths = generate(str(tmp_path / "speech"), num_utts=3, num_speakers=3, seed=5, progress=False,
                     babble_seconds=20.0)
    flags = ["--audio-encoder", "whisper", "--decoder", "whisper-decoder", "--elayers", "0",
             "--audio-model-name", WHISPER, "--decoder-model-name", WHISPER, "--adim", "384"]
    rec = Recognizer.from_pretrained(None, flags=flags)
    dataset = build_dataset(str(tmp_path / "speech"), paths["train"], "test", "audio", audio_utterance_norm=False)
    item, clip = dataset[0], dataset.media_path(0)
    text = rec.transcribe(clip, beam_size=1)
    assert text == rec.transcribe({"audio": item["audio"]}, beam_size=1)
    # it recognises speech (an untrained decoder gets every word wrong): eSpeak's "red" may come out "rid"
    assert corpus_wer([item["text"]], [text])["wer"] <= 0.5, (item["text"], text)


def test_a_model_from_flags_must_be_pretrained_in_every_part(legacy_dir):
    with pytest.raises(ValueError, match="every part of the model must be pretrained, but these are not: .*encoder"):
        Recognizer.from_pretrained(None, flags=["--audio-encoder", "resnet1d", "--adim", "32", "--aheads", "2",
                                                "--eunits", "32", "--elayers", "1", "--dunits", "32",
                                                "--dlayers", "1", "--sp-model-path", os.path.join(legacy_dir, "spm",
                                                                                                  "unigram5000.model"),
                                                "--dict-path", os.path.join(legacy_dir, "spm",
                                                                            "unigram5000_units.txt")])


def test_flags_parse_like_the_scripts():
    args = parse_model_flags(["--audio-encoder", "whisper", "--max-new-tokens", "7"])
    assert args.audio_encoder == "whisper" and args.max_new_tokens == 7 and args.decoder is None
