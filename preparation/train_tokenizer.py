"""Train a SentencePiece tokenizer and write the units list that train.py reads.

    python -m preparation.train_tokenizer --text transcripts.txt --out-prefix spm/unigram256 --vocab-size 256
    python -m preparation.train_tokenizer --corpus-dir /data/LRS3 --splits trainval --out-prefix spm/lrs3_unigram1000 --vocab-size 1000
    python -m preparation.train_tokenizer --label-csv data/lrs3/labels/lrs3_trainval.csv --out-prefix spm/u500 --vocab-size 500

writes ``PREFIX.model`` and ``PREFIX_units.txt`` (``<unk> 1`` followed by every other piece
of the model in sorted order, ids 2..N), the layout of the Auto-AVSR
``unigram5000_units.txt``; pass them as ``train.py --sp-model-path PREFIX.model --dict-path
PREFIX_units.txt``. The transcripts come from a text file (one per line), a corpus folder
(the ``.txt`` next to each video, LRS ``Text:`` or plain layout, see
``preparation/corpus.py``) or the transcript column of a label CSV. Text is upper-cased,
as in the legacy models. ``--vocab-size`` is a soft limit: a small corpus gives fewer pieces.
"""

import argparse
import os
import sys
from typing import Iterable, List, Optional, Sequence, Tuple


def train_tokenizer(lines: Iterable[str], out_prefix: str, vocab_size: int, model_type: str = "unigram") -> Tuple[str, str]:
    """Train on ``lines`` (upper-cased, whitespace collapsed; blank lines ignored); returns
    ``(model_path, units_path)``. Deterministic: the same lines give the same files."""
    import sentencepiece

    if vocab_size < 4:
        raise ValueError(f"--vocab-size must be at least 4, got {vocab_size}")
    sentences = [" ".join(line.upper().split()) for line in lines if line.strip()]
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


def transcripts_from_label_csv(path: str) -> List[str]:
    """The transcript column of a label CSV (every line must have one)."""
    from datamodule.label_list import read_label_list

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--label-csv: file not found: {path}")
    items = read_label_list(path)
    missing = [n for n, u in enumerate(items, 1) if not (u.transcript or "").strip()]
    if missing:
        raise ValueError(f"--label-csv {path}: utterance {missing[0]} (of {len(items)}) has no transcript column "
                         f"(5th field); the tokenizer needs the text")
    return [u.transcript for u in items]


def transcripts_from_corpus(root: str, layout: str = "auto", splits: Optional[Sequence[str]] = None) -> List[str]:
    """Transcripts of every clip of a corpus folder (the ``.txt`` next to each video); a
    missing or empty one is an error naming the file."""
    from preparation.corpus import find_clips, read_transcript

    clips, layout = find_clips(root, layout, splits=splits)
    texts = []
    for clip in clips:
        text = read_transcript(clip.transcript_path, layout)
        if not text:
            raise ValueError(f"{clip.transcript_path}: empty transcript")
        texts.append(text)
    return texts


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="Text file, one transcript per line.")
    source.add_argument("--corpus-dir", help="Corpus folder: <clip>.mp4 + <clip>.txt (LRS 'Text:' or plain).")
    source.add_argument("--label-csv", help="Label CSV with a transcript column.")
    p.add_argument("--layout", default="auto", choices=["auto", "lrs", "plain"], help="--corpus-dir layout. (Default: auto)")
    p.add_argument("--splits", nargs="+", default=None,
                   help="--corpus-dir: only these splits (first folder of the lrs layout), e.g. trainval.")
    p.add_argument("--out-prefix", required=True, help="Output prefix (writes PREFIX.model and PREFIX_units.txt).")
    p.add_argument("--vocab-size", type=int, default=5000, help="Vocabulary size (soft limit). (Default: 5000)")
    p.add_argument("--model-type", default="unigram", choices=["unigram", "bpe", "char", "word"])
    args = p.parse_args(argv)
    if args.splits and not args.corpus_dir:
        p.error("--splits needs --corpus-dir")
    try:
        if args.text:
            if not os.path.isfile(args.text):
                raise FileNotFoundError(f"--text: file not found: {args.text}")
            with open(args.text, encoding="utf8") as handle:
                lines = handle.read().splitlines()
        elif args.label_csv:
            lines = transcripts_from_label_csv(args.label_csv)
        else:
            lines = transcripts_from_corpus(args.corpus_dir, args.layout, args.splits)
        model, units = train_tokenizer(lines, args.out_prefix, args.vocab_size, args.model_type)
    except (FileNotFoundError, ValueError) as err:
        p.error(str(err))
    print(f"wrote {model} and {units} from {len([x for x in lines if x.strip()])} transcripts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
