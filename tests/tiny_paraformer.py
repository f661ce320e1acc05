"""A tiny audio Paraformer overfit on the first toy training utterances (shared by the
Paraformer tests: CIF queries in ``test_paraformer.py``, CTC queries in
``test_paraformer_ctc_queries.py``)."""

import json

import torch

from conftest import TINY_DIMS
from espnet.asr import eval_cli
from espnet.asr.recognizer import DecodeOptions, recognize_batch
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from flag_config import model_config


def overfit_paraformer(toy_corpus, tmp, num_utts: int, steps: int = 400, **flags):
    """Train on the first ``num_utts`` toy training utterances (CTC weight 0.3, no dropout,
    ``flags``: more ``model_config`` fields) until every one decodes right or ``steps``
    updates; save as ``train.py`` saves. Returns ``(checkpoint, csv, transcripts, losses)``."""
    from datamodule.collate import collate_pad
    from datamodule.data_module import build_dataset
    from datamodule.text_transform import TextTransform
    from espnet.training.checkpoints import write_sidecar

    path = str(tmp / "overfit.csv")
    with open(toy_corpus["train"], encoding="utf8") as src:
        lines = src.readlines()[:num_utts]
    with open(path, "w", encoding="utf8") as dst:
        dst.writelines(lines)
    transcripts = [line.rstrip("\n").split(",", 4)[4] for line in lines]
    tokenizer = TextTransform(toy_corpus["sp_model_path"], toy_corpus["dict_path"])
    sizes = {k.lstrip("-"): int(v) for k, v in zip(TINY_DIMS[::2], TINY_DIMS[1::2])}
    config = model_config(odim=tokenizer.odim, audio_encoder="resnet1d", resnet_width=8, decoder="paraformer",
                          ctc_weight=0.3, dropout_rate=0.0, **sizes, **flags)
    torch.manual_seed(0)
    model = E2E(config)
    dataset = build_dataset(toy_corpus["root"], path, "test", "audio", audio_utterance_norm=model.audio_utterance_norm)
    batch = collate_pad([dataset[i] for i in range(len(dataset))])
    inputs = {"audio": batch["audios"], "audio_lengths": batch["audio_lengths"]}
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    losses = []
    for step in range(steps):
        model.train()
        out = model.losses(inputs, batch["targets"])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append({k: float(v.detach()) for k, v in out.items() if k.startswith("loss")})
        if step >= 49 and step % 10 == 9:  # until every utterance decodes right (150 to 200 steps, by processor)
            model.eval()
            items = [{"audio": batch["audios"][i, : int(n)]} for i, n in enumerate(batch["audio_lengths"])]
            texts = [tokenizer.post_process(h.token_ids) for h in recognize_batch(model, items, DecodeOptions())]
            if texts == transcripts:
                break
    checkpoint = str(tmp / "model_avg_1.pth")
    torch.save(model.state_dict(), checkpoint)
    write_sidecar(checkpoint, {"model_config": config.to_dict(), "sp_model_path": toy_corpus["sp_model_path"],
                               "dict_path": toy_corpus["dict_path"]})
    return checkpoint, path, transcripts, losses


def run_eval(root, test_file, checkpoint, out, *extra):
    """``eval.py`` on ``test_file`` (batches of 3, CPU): ``(exit code, its JSON)``."""
    code = eval_cli.main(["--root-dir", root, "--test-file", test_file, "--pretrained-model-path", checkpoint,
                          "--num-workers", "0", "--accelerator", "cpu", "--batch-size", "3", "--output-json", out,
                          *extra])
    with open(out, encoding="utf8") as handle:
        return code, json.load(handle)
