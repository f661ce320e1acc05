"""The generated GRID-style audio-visual corpus (preparation.synthetic_av): files, labels,
speaker split, audio/video alignment, lips that follow the speech, determinism, flags."""

import filecmp
import os

import pytest
import torch

from datamodule.label_list import read_label_list
from datamodule.media import load_audio, load_video
from datamodule.text_transform import TextTransform
from preparation.synthetic import grammar
from preparation.synthetic_av import generate, main

NUM_UTTS, NUM_SPEAKERS, SEED = 20, 5, 3
SPLITS = ("train", "val", "test")
DARK = 50  # gray level below which a pixel counts as mouth cavity (lips and skin are brighter)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synth_a"))
    paths = generate(out, num_utts=NUM_UTTS, num_speakers=NUM_SPEAKERS, seed=SEED, workers=1, progress=False)
    items = {split: read_label_list(paths[split]) for split in SPLITS}
    return out, paths, items


def _media(out, utt):
    mp4 = os.path.join(out, utt.dataset, utt.rel_path)
    return mp4, mp4[:-4] + ".wav", mp4[:-4] + ".txt"


def _speakers(items):
    return {utt.rel_path.split(os.sep)[0] for utt in items}


def test_files_exist(corpus):
    out, paths, items = corpus
    assert sum(len(v) for v in items.values()) == NUM_UTTS
    for key in ("sp_model_path", "dict_path", "noise_file", *SPLITS):
        assert os.path.isfile(paths[key]), key
    for split in SPLITS:
        for utt in items[split]:
            assert utt.dataset == "synth"
            mp4, wav, txt = _media(out, utt)
            assert os.path.getsize(mp4) > 1000 and os.path.getsize(wav) > 1000
            with open(txt, encoding="utf8") as handle:
                assert handle.read().strip() == utt.transcript
    babble = load_audio(paths["noise_file"])
    assert babble.size(0) >= 20 * 16000
    assert 0.01 < float(babble.pow(2).mean().sqrt()) < 0.9


def test_transcripts_follow_grid_grammar_and_token_ids_match(corpus):
    _, paths, items = corpus
    tokenizer = TextTransform(paths["sp_model_path"], paths["dict_path"])
    for split in SPLITS:
        for utt in items[split]:
            words = utt.transcript.lower().split()
            assert len(words) == len(grammar.SLOTS)
            assert all(word in slot for word, slot in zip(words, grammar.SLOTS)), utt.transcript
            assert utt.transcript == utt.transcript.upper()
            assert utt.token_ids.tolist() == tokenizer.tokenize(utt.transcript).tolist()


def test_splits_are_by_speaker(corpus):
    _, _, items = corpus
    train, val, test = (_speakers(items[split]) for split in SPLITS)
    assert train and val and test
    assert not train & test and not train & val and not val & test
    assert len(train | val | test) == NUM_SPEAKERS


def test_audio_and_video_durations_agree(corpus):
    out, _, items = corpus
    for split in SPLITS:
        for utt in items[split]:
            mp4, wav, _ = _media(out, utt)
            video = load_video(mp4)
            audio = load_audio(wav)
            assert tuple(video.shape[1:]) == (3, 96, 96)
            assert video.size(0) == utt.input_length
            assert abs(audio.size(0) / 16000 - video.size(0) / 25) <= 1 / 25
            assert audio.size(0) == 640 * video.size(0)


def test_mouth_opening_follows_audio_envelope(corpus):
    """Dark cavity pixels per decoded frame vs. audio RMS per 640-sample frame, pooled."""
    out, _, items = corpus
    opening, envelope = [], []
    for split in SPLITS:
        for utt in items[split]:
            mp4, wav, _ = _media(out, utt)
            gray = load_video(mp4).float().mean(1)[:, 24:, :]  # below the nostrils
            audio = load_audio(wav)[:, 0]
            n = gray.size(0)
            opening.append((gray < DARK).float().sum((1, 2)))
            envelope.append(audio[: n * 640].reshape(n, 640).pow(2).mean(1).sqrt())
    x, y = torch.cat(opening), torch.cat(envelope)
    assert float(x.max()) > 50 and float((x == 0).float().mean()) > 0.05  # the mouth opens and closes
    r = float(torch.corrcoef(torch.stack([x, y]))[0, 1])
    print(f"mouth opening vs audio RMS: Pearson r = {r:.3f} over {x.numel()} frames")
    assert r > 0.3


def test_same_seed_same_corpus_whatever_the_workers(corpus, tmp_path):
    out, paths, items = corpus
    again = generate(str(tmp_path), num_utts=NUM_UTTS, num_speakers=NUM_SPEAKERS, seed=SEED, workers=2, progress=False)
    for split in SPLITS:
        with open(paths[split], encoding="utf8") as a, open(again[split], encoding="utf8") as b:
            assert a.read() == b.read()
    utt = items["train"][0]
    wav_a = _media(out, utt)[1]
    wav_b = os.path.join(str(tmp_path), utt.dataset, utt.rel_path)[:-4] + ".wav"
    assert filecmp.cmp(wav_a, wav_b, shallow=False)
    assert filecmp.cmp(paths["noise_file"], again["noise_file"], shallow=False)


def test_seed_changes_the_utterance():
    from preparation.synthetic.espeak import ESpeakServer
    from preparation.synthetic.utterance import Job, synthesize

    words = ("bin", "blue", "at", "f", "two", "now")
    with ESpeakServer() as engine:
        a = synthesize(Job(0, 1, words, 0, "unused.mp4"), engine)
        b = synthesize(Job(0, 1, words, 0, "unused.mp4"), engine)
        c = synthesize(Job(0, 1, words, 1, "unused.mp4"), engine)
    assert torch.equal(a["audio"], b["audio"]) and torch.equal(a["frames"], b["frames"])  # the same job twice
    assert a["audio"].shape != c["audio"].shape or not torch.equal(a["audio"], c["audio"])
    assert a["frames"].shape != c["frames"].shape or not torch.equal(a["frames"], c["frames"])


def test_espeak_output_does_not_depend_on_what_was_said_before():
    from preparation.synthetic.espeak import ESpeakServer
    from preparation.synthetic.speakers import speaker

    voice = speaker(0).voice
    with ESpeakServer() as engine:
        first = engine.synthesize("set red by q nine again", voice)
        engine.synthesize("lay green with z zero soon", speaker(1).voice)
        second = engine.synthesize("set red by q nine again", voice)
    assert first.sample_rate == 22050
    assert torch.equal(torch.from_numpy(first.samples), torch.from_numpy(second.samples))
    assert first.phonemes == second.phonemes
    names = [p.lstrip("',") for p, _ in first.phonemes]
    assert "s" in names and "k" in names  # "set ... q": phoneme events with eSpeak mnemonics
    starts = [s for _, s in first.phonemes]
    assert starts == sorted(starts) and starts[-1] <= first.samples.size


@pytest.mark.parametrize("kwargs, flag", [
    ({"num_speakers": 2}, "--num-speakers"),
    ({"num_speakers": 5, "num_utts": 4}, "--num-utts"),
    ({"babble_seconds": 5.0}, "--babble-seconds"),
    ({"vocab_size": 2}, "--vocab-size"),
])
def test_bad_arguments_name_the_flag(tmp_path, kwargs, flag):
    args = {"num_utts": 10, "num_speakers": 5, **kwargs}
    with pytest.raises(ValueError, match=flag):
        generate(str(tmp_path), progress=False, **args)


def test_cli_rejects_too_few_speakers(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["--out", str(tmp_path), "--num-utts", "10", "--num-speakers", "2"])
    assert err.value.code == 2
    assert "--num-speakers" in capsys.readouterr().err
