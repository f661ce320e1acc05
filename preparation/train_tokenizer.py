"""Train a SentencePiece tokenizer and write the units list that train.py reads.

    python -m preparation.train_tokenizer --text transcripts.txt --out-prefix spm/unigram256 --vocab-size 256

writes ``spm/unigram256.model`` and ``spm/unigram256_units.txt`` (``<unk> 1`` followed by
every other piece of the model in sorted order, ids 2..N), the layout of the Auto-AVSR
``unigram5000_units.txt``. Text is upper-cased, as in the legacy models.
"""

import argparse
import os
import sys
from typing import Iterable, Tuple


def train_tokenizer(lines: Iterable[str], out_prefix: str, vocab_size: int, model_type: str = "unigram") -> Tuple[str, str]:
    """Train on ``lines``; returns ``(model_path, units_path)``."""
    import sentencepiece

    if vocab_size < 4:
        raise ValueError(f"--vocab-size must be at least 4, got {vocab_size}")
    sentences = [line.strip().upper() for line in lines if line.strip()]
    if not sentences:
        raise ValueError("no text to train the tokenizer on")
    os.makedirs(os.path.dirname(os.path.abspath(out_prefix)), exist_ok=True)
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_prefix=out_prefix,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=1.0,
        hard_vocab_limit=False,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        num_threads=1,
        minloglevel=2,
    )
    model_path = out_prefix + ".model"
    sp = sentencepiece.SentencePieceProcessor(model_file=model_path)
    pieces = sorted(
        sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not (sp.is_unknown(i) or sp.is_control(i))
    )
    units_path = out_prefix + "_units.txt"
    with open(units_path, "w", encoding="utf8") as handle:
        handle.write("<unk> 1\n")
        for n, piece in enumerate(pieces, start=2):
            handle.write(f"{piece} {n}\n")
    return model_path, units_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", required=True, help="Text file, one transcript per line.")
    p.add_argument("--out-prefix", required=True, help="Output prefix (writes PREFIX.model and PREFIX_units.txt).")
    p.add_argument("--vocab-size", type=int, default=5000, help="Vocabulary size. (Default: 5000)")
    p.add_argument("--model-type", default="unigram", choices=["unigram", "bpe", "char", "word"])
    args = p.parse_args(argv)
    if not os.path.isfile(args.text):
        p.error(f"--text: file not found: {args.text}")
    with open(args.text, encoding="utf8") as handle:
        model, units = train_tokenizer(handle, args.out_prefix, args.vocab_size, args.model_type)
    print(f"wrote {model} and {units}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
