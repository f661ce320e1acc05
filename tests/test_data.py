"""Label lists, media decoding, transforms, noise, batching and collation."""

import os

import pytest
import torch

from datamodule.av_dataset import AVDataset
from datamodule.collate import collate_pad
from datamodule.label_list import read_label_list
from datamodule.media import load_audio, load_video, write_video, write_wav
from datamodule.noise import add_noise, synthetic_babble
from datamodule.samplers import BucketBatchSampler
from datamodule.transforms import AudioTransform, VideoTransform


def test_malformed_csv_line_reports_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("d,a.mp4,10,1 2 3\nd,b.mp4,ten,1 2\n", encoding="utf8")
    with pytest.raises(ValueError, match=r"bad.csv:2: input_length must be an integer"):
        read_label_list(str(path))
    path.write_text("d,a.mp4,10,1 2 3\n\nd,b.mp4\n", encoding="utf8")
    with pytest.raises(ValueError, match=r"bad.csv:3: expected 'dataset,rel_path,input_length,token_ids"):
        read_label_list(str(path))
    with pytest.raises(FileNotFoundError, match="label list not found"):
        read_label_list(str(tmp_path / "none.csv"))


def test_csv_transcript_may_contain_commas(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text("d,a.mp4,10,5 6,HELLO, WORLD\n", encoding="utf8")
    (utt,) = read_label_list(str(path))
    assert utt.input_length == 10 and utt.token_ids.tolist() == [5, 6] and utt.transcript == "HELLO, WORLD"


def test_media_round_trip(tmp_path):
    wave = 0.5 * torch.sin(torch.arange(8000) / 7.0)
    write_wav(str(tmp_path / "a.wav"), wave)
    audio = load_audio(str(tmp_path / "a.wav"))
    assert audio.shape == (8000, 1)
    assert (audio[:, 0] - wave).abs().max() < 1e-4
    frames = torch.zeros(12, 96, 96, dtype=torch.uint8)
    frames[:, 30:60, 30:60] = 200
    write_video(str(tmp_path / "a.mp4"), frames)
    video = load_video(str(tmp_path / "a.mp4"))
    assert video.shape == (12, 3, 96, 96) and video.dtype == torch.uint8
    assert abs(video[:, 0, 45, 45].float().mean().item() - 200) < 8
    assert video[:, 0, 5, 5].float().mean().item() < 10
    with pytest.raises(FileNotFoundError, match="video file not found"):
        load_video(str(tmp_path / "missing.mp4"))


def test_load_video_gives_the_frames_of_pyav_rgb_conversion(tmp_path):
    """The one colour converter per clip gives, frame by frame, what PyAV's own
    ``to_ndarray(format="rgb24")`` gives (a colour clip, odd content in every frame)."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    path = str(tmp_path / "colour.mp4")
    with av.open(path, mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for n in range(9):
            rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            rgb[:, : 7 * n] = (30 * n, 255 - 25 * n, 90)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with av.open(path) as container:
        expected = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    video = load_video(path)
    assert video.shape == (9, 3, 48, 64) and video.dtype == torch.uint8
    assert torch.equal(video, torch.from_numpy(expected).permute(0, 3, 1, 2))


def test_video_transform_matches_legacy_definition():
    frames = torch.randint(0, 256, (5, 3, 96, 96), dtype=torch.uint8)
    out = VideoTransform("test")(frames)
    assert out.shape == (5, 1, 88, 88)
    x = frames.float()[:, :, 4:92, 4:92] / 255.0
    gray = 0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    torch.testing.assert_close(out[:, 0], (gray - 0.421) / 0.165, rtol=1e-5, atol=1e-4)
    assert VideoTransform("train")(frames).shape == (5, 1, 88, 88)


def test_add_noise_hits_target_snr():
    speech = torch.randn(1, 16000)
    noise = synthetic_babble(seconds=2.0, seed=3)[:, :16000]
    for snr in (-5.0, 0.0, 10.0):
        mixed = add_noise(speech, noise, snr)
        added = mixed - speech
        measured = 10 * torch.log10(speech.pow(2).sum() / added.pow(2).sum())
        assert measured.item() == pytest.approx(snr, abs=1e-3)


def test_babble_is_deterministic_and_speech_like():
    a, b = synthetic_babble(seconds=1.0, seed=1), synthetic_babble(seconds=1.0, seed=1)
    assert torch.equal(a, b) and a.shape == (1, 16000)  # the same computation twice: bit for bit
    assert not torch.equal(a, synthetic_babble(seconds=1.0, seed=2))
    spectrum = torch.fft.rfft(a[0]).abs()
    low = spectrum[:4000].pow(2).sum()  # 1-Hz bins: energy below 4 kHz
    assert low / spectrum.pow(2).sum() > 0.8


def test_audio_transform_test_noise_is_reproducible():
    audio = torch.randn(6400, 1) * 0.1
    tr = AudioTransform("test", snr_target=0.0, seed=7)
    a, b = tr(audio, key=3), tr(audio, key=3)
    assert torch.equal(a, b) and a.shape == (6400, 1)  # the same computation twice: bit for bit
    assert not torch.equal(a, tr(audio, key=4))
    clean = AudioTransform("test")(audio)
    assert clean.mean().abs() < 1e-5 and (clean.std() - 1).abs() < 1e-3


def test_bucket_sampler_budget_and_coverage():
    lengths = [5, 50, 7, 33, 21, 40, 8, 12, 49, 3]
    sampler = BucketBatchSampler(lengths, max_frames=60, num_buckets=3, shuffle=True, seed=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 60 for b in batches)
    sampler.set_epoch(1)
    assert sorted(i for b in sampler for i in b) == list(range(len(lengths)))
    ranks = [list(BucketBatchSampler(lengths, 60, 3, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1])
    assert not set(map(tuple, ranks[0])) & set(map(tuple, ranks[1]))
    # all utterances are used: a batch is split rather than left out to even the ranks' counts
    assert sorted(i for r in ranks for b in r for i in b) == list(range(len(lengths)))
    for world in (2, 3, 4):
        shards = [BucketBatchSampler(lengths, 60, 3, seed=1, rank=r, world_size=world) for r in range(world)]
        assert len({len(s) for s in shards}) == 1 and shards[0].left_out == 0
        assert sorted(i for s in shards for b in s for i in b) == list(range(len(lengths)))
    # nothing to split (one utterance per batch): the last batch is left out, and counted
    singles = [BucketBatchSampler([50, 50, 50], 60, 1, seed=1, rank=r, world_size=2) for r in (0, 1)]
    assert [len(s) for s in singles] == [1, 1] and singles[0].left_out == 1
    with pytest.raises(ValueError, match=r"train.csv: utterance 1 has 50 frames, more than --max-frames 40"):
        BucketBatchSampler(lengths, max_frames=40, source="train.csv")


def test_collate_pads_and_keeps_lengths():
    batch = [
        {"video": torch.ones(4, 1, 88, 88), "audio": torch.ones(2560, 1), "target": torch.tensor([3, 4]), "idx": 0},
        {"video": torch.ones(2, 1, 88, 88), "audio": torch.ones(1280, 1), "target": torch.tensor([5]), "idx": 1},
    ]
    out = collate_pad(batch)
    assert out["videos"].shape == (2, 4, 1, 88, 88) and out["video_lengths"].tolist() == [4, 2]
    assert out["audios"].shape == (2, 2560, 1) and out["audio_lengths"].tolist() == [2560, 1280]
    assert out["targets"].tolist() == [[3, 4], [5, -1]] and out["idxs"].tolist() == [0, 1]
    assert out["videos"][1, 2:].abs().sum() == 0


def test_dataset_items_and_missing_media(toy_corpus, tmp_path):
    ds = AVDataset(toy_corpus["root"], toy_corpus["train"], "audiovisual", VideoTransform("test"), AudioTransform("test"))
    item = ds[0]
    t = item["video"].shape[0]
    assert item["video"].shape == (t, 1, 88, 88) and t == ds.items[0].input_length
    assert item["audio"].shape == (t * 640, 1)
    bad = tmp_path / "missing.csv"
    bad.write_text("toy,nobody/none.mp4,10,1 2\n", encoding="utf8")
    with pytest.raises(FileNotFoundError, match=r"video file not found: .*nobody/none.mp4"):
        AVDataset(toy_corpus["root"], str(bad), "video", VideoTransform("test"))[0]
    with pytest.raises(ValueError, match="unknown modality 'lips'"):
        AVDataset(toy_corpus["root"], toy_corpus["train"], "lips")


def test_video_transform_crops_before_converting_with_the_same_values():
    """The transform crops the uint8 frames first; the legacy order (convert, then crop) gives
    the same tensors, bit for bit, for train and test transforms and for gray frames handed
    out as a view of one channel (as the media cache does). Bit for bit on any processor:
    every step is element-wise (/255, weighted sum, normalise), and IEEE arithmetic rounds
    each element the same whatever the kernel or layout."""
    import torchvision

    def legacy(transform, frames, generator):
        x = frames.float() / 255.0
        if transform.train:
            top, left = (int(torch.randint(0, n - 88 + 1, (1,), generator=generator)) for n in frames.shape[-2:])
            x = x[..., top : top + 88, left : left + 88]
        else:
            x = torchvision.transforms.CenterCrop(88)(x)
        x = torchvision.transforms.Grayscale()(x)
        if transform.mask is not None:
            x = transform.mask(x, generator)
        return torchvision.transforms.Normalize(0.421, 0.165)(x)

    for subset in ("train", "test"):
        transform = VideoTransform(subset)
        for frames in (torch.randint(0, 256, (30, 3, 96, 97), dtype=torch.uint8),
                       torch.randint(0, 256, (30, 1, 96, 96), dtype=torch.uint8).expand(-1, 3, -1, -1)):
            ours = transform(frames, torch.Generator().manual_seed(5))
            assert torch.equal(ours, legacy(transform, frames.contiguous(), torch.Generator().manual_seed(5)))


def test_media_cache_gives_the_items_of_decoding(toy_corpus):
    from datamodule.media_cache import MediaCache, fill_cache

    noise = torch.randn(1, 16000)
    plain = AVDataset(toy_corpus["root"], toy_corpus["train"], "audiovisual", VideoTransform("train"),
                      AudioTransform("train", noise=noise), seed=1)
    cache = MediaCache(2**30)
    cached = AVDataset(toy_corpus["root"], toy_corpus["train"], "audiovisual", VideoTransform("train"),
                       AudioTransform("train", noise=noise), seed=1, media_cache=cache)
    notes = []
    fill_cache(cache, cached.media_files(), "train.csv", log=notes.append)
    n = len(plain)
    assert len(cache) == 2 * n and notes[0].startswith(f"media cache: train.csv: {2 * n} of {2 * n} file(s)")
    for key in [(0, 0), (0, 3), (2, 3)]:
        a, b = plain[key], cached[key]
        # element-wise video steps on the cached view, the same audio steps on the same waveform: exact
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["audio"], b["audio"])
    path = plain.media_path(0)
    frames = load_video(path)
    stored = cache._videos[path]
    assert stored.shape[1] == 1 and torch.equal(cache.video(path), frames)  # gray clips: one channel kept
    # a bound smaller than the corpus: the first clips are kept, the others decoded when read
    small = MediaCache(stored.numel() * 3)
    fill_cache(small, cached.media_files(), "train.csv", log=notes.append, workers=3)
    assert 0 < len(small) < 2 * n and small.bytes <= small.max_bytes and "bound of" in notes[-1]
    assert torch.equal(small.video(plain.media_path(n - 1)), load_video(plain.media_path(n - 1)))
    # the clips kept under the bound do not depend on the number of decoding threads
    one = MediaCache(stored.numel() * 3)
    fill_cache(one, cached.media_files(), "train.csv", log=notes.append, workers=1)
    assert list(one._videos) == list(small._videos) and list(one._audios) == list(small._audios)
    assert one.bytes == small.bytes
    assert notes[-1].endswith("1 thread(s) (the bound of 0.00 GiB was reached: the other "
                              f"{2 * n - len(one)} are decoded each time they are read)")


def test_media_cache_reports_a_clip_it_cannot_decode(tmp_path):
    from datamodule.media_cache import MediaCache, fill_cache

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(ValueError, match=r"broken\.mp4"):
        fill_cache(MediaCache(2**30), [("video", str(broken))] * 3, "bad.csv", log=lambda _: None, workers=2)


def test_cpu_threads_default_to_all_cores_unless_told():
    from espnet.training.cpu_threads import available_cores, choose_num_threads

    assert choose_num_threads(0, environ={}, cores=16) == (16, "all 16 available cores")
    assert choose_num_threads(0, environ={})[0] == available_cores() == len(os.sched_getaffinity(0))
    assert choose_num_threads(0, environ={"OMP_NUM_THREADS": "3"}, cores=16) == (3, "OMP_NUM_THREADS")
    assert choose_num_threads(0, environ={"OMP_NUM_THREADS": "4,2"}, cores=16)[0] == 4  # nested: the outer level
    assert choose_num_threads(0, environ={"OMP_NUM_THREADS": ""}, cores=2)[0] == 2  # empty = unset
    assert choose_num_threads(5, environ={"OMP_NUM_THREADS": "3"}, cores=2) == (5, "--num-threads")  # the flag wins
    with pytest.raises(ValueError, match="OMP_NUM_THREADS='zero' is not a positive number"):
        choose_num_threads(0, environ={"OMP_NUM_THREADS": "zero"})
    with pytest.raises(ValueError, match="OMP_NUM_THREADS='0'"):
        choose_num_threads(0, environ={"OMP_NUM_THREADS": "0"})
    with pytest.raises(ValueError, match="--num-threads must be >= 0"):
        choose_num_threads(-1)


def test_cpu_threads_idle_is_opt_in_and_checked_again_every_epoch(capsys):
    import torch

    from espnet.training.cpu_threads import choose_num_threads
    from espnet.training.idle_threads import IdleThreads
    from espnet.training.train_cli import parse_args

    assert choose_num_threads("idle", environ={}, cores=2, busy=0.1) == (
        2, "--num-threads idle: 2 cores, 0.1 busy with other work")
    assert choose_num_threads("idle", environ={}, cores=2, busy=4.2)[0] == 1  # at least one
    assert choose_num_threads("idle", environ={"OMP_NUM_THREADS": "8"}, cores=16, busy=3.6)[0] == 12
    base = ["--root-dir", "r", "--train-file", "t.csv"]
    assert parse_args(base + ["--num-threads", "idle"]).num_threads == "idle"
    assert parse_args(base).num_threads == 0 and parse_args(base + ["--num-threads", "3"]).num_threads == 3
    for bad, message in (("some", "expected a number of threads or 'idle', got 'some'"),
                         ("-1", "--num-threads must be >= 0 (0 = default) or idle, got -1")):
        with pytest.raises(SystemExit) as stop:
            parse_args(base + ["--num-threads", bad])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    # during training: the first epoch keeps the start-up choice, each later one measures again
    busy, lines = iter([1.0, 0.0, 0.0]), []
    callback = IdleThreads(measure=lambda: next(busy), cores=2, log=lines.append)
    torch.set_num_threads(2)
    callback.on_train_epoch_start()
    assert torch.get_num_threads() == 2 and lines == []
    callback.on_train_epoch_start()  # another job took a core
    assert torch.get_num_threads() == 1
    assert lines == ["CPU threads: 2 -> 1 (--num-threads idle: 2 cores, 1.0 busy with other work)"]
    callback.on_train_epoch_start()  # it ended
    callback.on_train_epoch_start()
    assert torch.get_num_threads() == 2 and len(lines) == 2


def test_cpu_threads_measure_the_busy_cores_from_proc_stat():
    from espnet.training.cpu_threads import busy_cores, parse_proc_stat

    def stat(cpu0, cpu1):  # (busy, idle) ticks per CPU
        lines = ["cpu  1 2 3 4 5 6 7 8 0 0"]
        for n, (busy, idle) in enumerate((cpu0, cpu1)):
            lines.append(f"cpu{n} {busy} 0 0 {idle} 0 0 0 0 0 0")
        return "\n".join(lines + ["intr 1 2 3", "ctxt 99"])

    before = parse_proc_stat(stat((100, 900), (50, 950)))
    assert before == {0: (100, 1000), 1: (50, 1000)}
    after = parse_proc_stat(stat((150, 900), (55, 995)))  # cpu0 all busy, cpu1 10 % busy
    assert busy_cores(before, after, {0, 1}) == pytest.approx(1.1)
    assert busy_cores(before, after, {1}) == pytest.approx(0.1)  # only the cores this process may use
    assert busy_cores(before, before, {0, 1}) == 0.0


def test_cpu_threads_are_set_and_printed(monkeypatch):
    import torch

    from espnet.training.cpu_threads import apply_num_threads, available_cores

    lines = []
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert apply_num_threads(0, log=lines.append) == torch.get_num_threads() == available_cores()
    assert lines[-1] == f"CPU threads: {available_cores()} (all {available_cores()} available cores)"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert apply_num_threads(0, log=lines.append) == torch.get_num_threads() == 1
    assert lines[-1] == "CPU threads: 1 (OMP_NUM_THREADS)"
    assert apply_num_threads(3, log=lines.append) == torch.get_num_threads() == 3
    assert lines[-1] == "CPU threads: 3 (--num-threads)"


def test_train_snrs_parse_and_refuse_what_is_not_an_snr():
    from datamodule.snr_levels import CLEAN_SNR, TRAIN_SNRS, parse_snr_levels

    assert parse_snr_levels("-5, 0,10.5,CLEAN") == (-5.0, 0.0, 10.5, CLEAN_SNR)
    assert parse_snr_levels("-5,0,5,10,15,20,clean") == TRAIN_SNRS
    for bad, item in (("5,x", "x"), ("5,,10", ""), ("nan", "nan"), ("inf,0", "inf")):
        with pytest.raises(ValueError, match=rf"--train-snrs: '{item}' is not an SNR in dB \(a number\) or 'clean'"):
            parse_snr_levels(bad)


def test_train_snrs_set_the_training_babble():
    from datamodule.snr_levels import CLEAN_SNR

    audio = torch.randn(6400, 1) * 0.1

    def run(snrs):
        return AudioTransform("train", train_snrs=snrs)(audio, generator=torch.Generator().manual_seed(3))

    clean = run((CLEAN_SNR,))
    masked = AudioTransform("train", train_snrs=(CLEAN_SNR,)).mask(audio, torch.Generator().manual_seed(3))
    assert AudioTransform("train", train_snrs=(CLEAN_SNR,)).noise is None
    torch.testing.assert_close(clean, torch.nn.functional.layer_norm(masked, masked.shape, eps=1e-8))
    noisy = run((0.0,))  # noise as loud as the (masked) speech: about half the normalised power
    kept = masked[:, 0] != 0
    assert 0.3 < torch.nn.functional.cosine_similarity(noisy[kept, 0], clean[kept, 0], dim=0) < 0.9


def test_train_snrs_flag_is_checked(capsys):
    from espnet.training.train_cli import parse_args

    args = parse_args(["--root-dir", "data", "--train-file", "train.csv", "--audio-encoder", "resnet1d",
                       "--train-snrs", "10,clean"])
    assert args.train_snrs == (10.0, 999999)
    with pytest.raises(SystemExit) as stop:
        parse_args(["--root-dir", "data", "--train-file", "train.csv", "--audio-encoder", "resnet1d",
                    "--train-snrs", "10,loud"])
    assert stop.value.code == 2
    assert "--train-snrs: 'loud' is not an SNR in dB (a number) or 'clean' (in '10,loud')" in capsys.readouterr().err


def test_data_module_hands_the_train_snrs_to_the_training_set(toy_corpus):
    from datamodule.data_module import DataModule
    from datamodule.snr_levels import CLEAN_SNR

    root, train = toy_corpus["root"], toy_corpus["train"]
    quiet = DataModule(root, train, None, "audio", train_snrs=(CLEAN_SNR,)).train_dataloader()
    assert quiet.dataset.audio_transform.noise is None
    noisy = DataModule(root, train, None, "audio", train_snrs=(5.0, CLEAN_SNR)).train_dataloader()
    assert noisy.dataset.audio_transform.noise.snr_levels == [5.0, CLEAN_SNR]
