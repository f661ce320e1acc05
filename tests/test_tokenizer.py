"""SentencePiece tokenisation: legacy ids and training new tokenizers."""

import pytest
import torch

from datamodule.text_transform import TextTransform
from preparation.train_tokenizer import train_tokenizer


def test_legacy_ids_match_reference(legacy_spm, legacy_dir):
    tt = TextTransform(*legacy_spm)
    assert tt.odim == 5049 and tt.eos == 5048 and tt.token_list[0] == "<blank>"
    ref = torch.load(f"{legacy_dir}/tiny_video_reference.pt", weights_only=True)
    assert tt.tokenize(ref["text"]).tolist() == ref["label_ids"].tolist()
    assert tt.post_process(ref["label_ids"]) == ref["text"]
    assert tt.post_process(ref["beam5_ids"]) == ref["beam5_text"]


def test_trained_tokenizer_round_trip(tmp_path):
    text = ["bin blue at a one now", "lay green by b two please", "place red in c three again"]
    model, units = train_tokenizer(text, str(tmp_path / "spm" / "t"), vocab_size=30)
    tt = TextTransform(model, units)
    lines = open(units, encoding="utf8").read().splitlines()
    assert lines[0] == "<unk> 1"
    assert [int(line.split()[1]) for line in lines] == list(range(1, len(lines) + 1))
    assert tt.odim == len(lines) + 2
    for sentence in text:
        ids = tt.tokenize(sentence)
        assert ids.min() >= 1 and ids.max() < tt.eos
        assert tt.post_process(ids) == sentence.upper()


def test_units_file_errors(tmp_path, legacy_spm):
    bad = tmp_path / "units.txt"
    bad.write_text("<unk> 1\nA 3\n", encoding="utf8")
    with pytest.raises(ValueError, match=r"units.txt:2: ids must be 1..N"):
        TextTransform(legacy_spm[0], str(bad))
    with pytest.raises(FileNotFoundError, match="--sp-model-path"):
        TextTransform(str(tmp_path / "missing.model"), str(bad))
