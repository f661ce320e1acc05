"""The run's typed hyper-parameters keep the plain-dict keys every checkpoint has held."""

from espnet.training.hparams import TrainingHparams
from espnet.training.train_cli import parse_args

KEYS = ["model_config", "sp_model_path", "dict_path", "tokenizer_fingerprint", "lr", "weight_decay",
        "warmup_epochs", "max_epochs", "pretrained_model_path", "transfer_frontend", "transfer_encoder",
        "transfer_backend", "init_audio_from", "init_video_from", "init_encoder_from", "modality_dropout",
        "root_dir", "train_file", "val_file", "max_frames", "seed", "skip_nonfinite", "accumulate_grad_batches",
        "val_wer_every", "max_new_tokens", "freeze_param", "transfer_ar_scorer"]


def test_hparams_from_the_flags_as_checkpoints_store_them():
    args = parse_args(["--root-dir", "data", "--train-file", "train.csv", "--audio-encoder", "resnet1d",
                       "--lr", "0.002", "--max-epochs", "3", "--accumulate-grad-batches", "2", "--seed", "7"])
    hp = TrainingHparams.from_args(args, {"odim": 5}, {"sp_model_path": "tokenizer/a.model",
                                                      "dict_path": "tokenizer/a.txt"}, "f00d")
    stored = hp.to_dict()
    assert list(stored) == KEYS
    assert (stored["lr"], stored["max_epochs"], stored["accumulate_grad_batches"], stored["seed"]) == (0.002, 3, 2, 7)
    assert stored["sp_model_path"] == "tokenizer/a.model" and stored["tokenizer_fingerprint"] == "f00d"
    assert stored["val_file"] is None and stored["model_config"] == {"odim": 5}
    assert TrainingHparams(**stored) == hp
