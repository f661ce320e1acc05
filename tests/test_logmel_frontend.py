"""The log-mel audio frontend (``--audio-encoder logmel``): its features against a plain
per-frame reference, shapes and lengths at 25 Hz, batch independence, its flags, and a tiny
model with it training and decoding."""

import argparse

import numpy as np
import pytest
import torch

from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from espnet.nets.pytorch_backend.frontend.audio.logmel import LogMel, LogMelFrontend
from espnet.nets.pytorch_backend.frontend.audio.mel import slaney_mel_filters
from espnet.training.cli_args import add_model_args, resolve_model_config
from flag_config import model_config


def reference_log_mel(wave: np.ndarray, frames: int) -> np.ndarray:
    """Frame ``t`` = samples ``[160 t - 200, 160 t + 200)`` (zeros outside), periodic Hann window,
    power spectrum, Slaney mel filters, natural log floored at 1e-6, per-bin mean/std over the
    ``frames`` frames: ``(frames, 80)``."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    filters = slaney_mel_filters(400, 80, 16000).double().numpy()
    rows = []
    for t in range(frames):
        chunk = np.zeros(400)
        for i in range(400):
            s = 160 * t - 200 + i
            if 0 <= s < len(wave):
                chunk[i] = wave[s]
        power = np.abs(np.fft.rfft(chunk * window)) ** 2
        rows.append(np.log(np.maximum(power @ filters, 1e-6)))
    feats = np.stack(rows)
    return (feats - feats.mean(0)) / np.sqrt(feats.var(0) + 1e-5)


def test_log_mel_matches_a_per_frame_reference():
    g = torch.Generator().manual_seed(0)
    wave = torch.randn(1, 3200, generator=g)
    frames = torch.tensor([20])
    got = LogMel(80)(wave, frames)[0].double().numpy()
    np.testing.assert_allclose(got, reference_log_mel(wave[0].double().numpy(), 20), atol=2e-3, rtol=1e-3)


def test_shapes_lengths_and_batch_independence():
    torch.manual_seed(0)
    frontend = LogMelFrontend(channels=8, dim=24).eval()
    g = torch.Generator().manual_seed(1)
    long, short = torch.randn(6400 + 300, generator=g), torch.randn(4480 + 100, generator=g)
    batch = torch.zeros(2, long.numel(), 1)
    batch[0, :, 0], batch[1, : short.numel(), 0] = long, short
    feats, lengths = frontend(batch, torch.tensor([long.numel(), short.numel()]))
    assert feats.shape == (2, 10, 24) and lengths.tolist() == [10, 7]
    alone, alone_len = frontend(short.view(1, -1, 1), torch.tensor([short.numel()]))
    assert alone.shape == (1, 7, 24) and alone_len.tolist() == [7]
    torch.testing.assert_close(feats[1, :7], alone[0], atol=1e-5, rtol=1e-4)
    # a (B, S) waveform is accepted as (B, S, 1)
    torch.testing.assert_close(frontend(batch[..., 0], torch.tensor([long.numel(), short.numel()]))[0], feats)


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match=r"log-mel frontend expects \(B, S, 1\) or \(B, S\) waveforms, got \(2, 640, 2\)"):
        LogMelFrontend()(torch.zeros(2, 640, 2), torch.tensor([640, 640]))


def test_flags_reach_the_frontend():
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    args = parser.parse_args(["--audio-encoder", "logmel", "--logmel-channels", "8", "--logmel-dim", "20"])
    config = resolve_model_config(args, 10)
    assert config.modality == "audio" and config.audio_encoder_conf == {"channels": 8, "dim": 20}
    model = E2E(config)
    assert model.frontend.output_dim == 20 and model.frontend.conv[0].out_channels == 8
    with pytest.raises(ValueError, match=r"--logmel-channels \(logmel\): channels must be >= 1, got 0"):
        resolve_model_config(parser.parse_args(["--audio-encoder", "logmel", "--logmel-channels", "0"]), 10)


def test_tiny_model_trains_and_decodes():
    from espnet.asr.recognizer import DecodeOptions, recognize

    torch.manual_seed(0)
    model = E2E(model_config(odim=12, audio_encoder="logmel", logmel_channels=4, logmel_dim=16,
                             adim=16, aheads=2, eunits=32, elayers=1, dunits=32, dlayers=1, dropout_rate=0.0))
    wave = torch.randn(1, 6400, 1)
    inputs = {"audio": wave, "audio_lengths": torch.tensor([6400])}
    targets = torch.tensor([[3, 5, 7, 2]])
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    losses = []
    for _ in range(40):
        loss = model(inputs, targets)[0]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    assert losses[-1] < 0.2 * losses[0]
    model.eval()
    with torch.no_grad():
        hyp = recognize(model, {"audio": wave[0]}, DecodeOptions(beam_size=2, ctc_weight=0.3))
    assert hyp.token_ids == [3, 5, 7, 2]
