"""Pretrained-style decoders must stop: a random model never emits its end token, so these
tests teach tiny LLaMA and Whisper decoders (random initialisation) a handful of utterances
until they overfit, save the model as ``train.py`` does, and then ``eval.py`` must give back
exactly those transcripts, with nothing after them (generation stopped at the end token)."""

import json

import pytest
import torch

from conftest import TINY_ENCODER_DIMS

transformers = pytest.importorskip("transformers")

from espnet.asr import eval_cli  # noqa: E402
from tiny_hf import save_tiny_llama, save_tiny_whisper  # noqa: E402

NUM_UTTS = 8


@pytest.fixture(scope="module")
def overfit_list(toy_corpus, tmp_path_factory):
    """The first utterances of the toy training list (transcript column included)."""
    path = str(tmp_path_factory.mktemp("overfit") / "overfit.csv")
    with open(toy_corpus["train"], encoding="utf8") as src:
        lines = src.readlines()[:NUM_UTTS]
    with open(path, "w", encoding="utf8") as dst:
        dst.writelines(lines)
    return path, [line.rstrip("\n").split(",", 4)[4] for line in lines]


def _config(kind: str, model_dir: str):
    from flag_config import model_config

    dims = dict(zip([f[2:] for f in TINY_ENCODER_DIMS[::2]], map(int, TINY_ENCODER_DIMS[1::2])))
    # no SentencePiece tokenizer (odim None): these decoders bring their own
    return model_config(odim=None, audio_encoder="resnet1d", resnet_width=8, decoder=kind, decoder_model_name=model_dir,
                        ctc_weight=0.0, **dims)


def _overfit(model, batch, transcripts, max_steps=400):
    """AdamW on the whole batch until greedy decoding gives every transcript back."""
    inputs = {"audio": batch["audios"], "audio_lengths": batch["audio_lengths"]}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for step in range(1, max_steps + 1):
        model.train()
        loss = model(inputs, batch["targets"], texts=transcripts)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            model.eval()
            with torch.no_grad():
                enc, enc_len = model.encode(inputs)
                texts = [model.decoder.ids_to_text(ids, None) for ids in model.decoder.generate_ids(enc, enc_len, 1, 40)]
                if texts == transcripts:
                    return step
    raise AssertionError(f"the decoder did not learn the {len(transcripts)} transcripts in {max_steps} steps")


@pytest.mark.parametrize("kind", ["llama", "whisper-decoder"])
def test_decoder_learns_to_stop(kind, toy_corpus, overfit_list, tmp_path):
    from datamodule.collate import collate_pad
    from datamodule.data_module import build_dataset
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
    from espnet.training.checkpoints import write_sidecar

    path, transcripts = overfit_list
    saver = save_tiny_llama if kind == "llama" else save_tiny_whisper
    config = _config(kind, saver(str(tmp_path / kind)))
    torch.manual_seed(0)
    model = E2E(config)
    dataset = build_dataset(toy_corpus["root"], path, "test", "audio", audio_utterance_norm=model.audio_utterance_norm)
    batch = collate_pad([dataset[i] for i in range(len(dataset))])
    assert batch["texts"] == transcripts
    _overfit(model, batch, transcripts)

    checkpoint = str(tmp_path / "model_avg_1.pth")  # what train.py writes: state dict + config sidecar
    torch.save(model.state_dict(), checkpoint)
    write_sidecar(checkpoint, {"model_config": config.to_dict(), "sp_model_path": None, "dict_path": None})
    out = str(tmp_path / "decoded.json")
    code = eval_cli.main(["--root-dir", toy_corpus["root"], "--test-file", path, "--pretrained-model-path", checkpoint,
                          "--beam-size", "1", "--max-new-tokens", "40", "--num-workers", "0", "--accelerator", "cpu",
                          "--output-json", out])
    assert code == 0
    with open(out, encoding="utf8") as handle:
        result = json.load(handle)
    assert [u["hypothesis"] for u in result["utterances"]] == transcripts
    assert result["wer"] == 0.0
