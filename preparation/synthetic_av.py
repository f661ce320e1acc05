"""A generated GRID-style audio-visual speech corpus: eSpeak NG speech, rendered lips.

Sentences follow the GRID grammar (command colour preposition letter digit adverb, e.g.
"BIN BLUE AT F TWO NOW"). Speech comes from eSpeak NG (``espeakng-loader`` wheel, through
ctypes) with one voice, variant, rate and pitch per speaker, resampled from 22050 Hz to
16 kHz. The video is a 25 fps 96x96 grayscale mouth region rendered from eSpeak's phoneme
timeline: phonemes -> visemes -> smoothly coarticulated lip opening, spreading, rounding,
teeth and tongue -> drawn lips, cavity, teeth and tongue, with per-speaker faces, head
motion, light changes and sensor noise. Audio is ``T * 640`` samples for ``T`` frames.

    python -m preparation.synthetic_av --out data/synth --num-utts 1000 --num-speakers 20 --seed 0

writes ``OUT/synth/<speaker>/<utt>.{mp4,wav,txt}``, ``OUT/labels/{train,val,test}.csv``
(legacy 4 columns + transcript; speakers do not overlap across splits),
``OUT/spm/synth_unigram.model`` + ``OUT/spm/synth_unigram_units.txt`` (trained on the
training transcripts only) and ``OUT/babble.wav`` (babble of training utterances for
``--noise-file``). The same seed gives the same files.
"""

import argparse
import contextlib
import multiprocessing
import os
import random
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from preparation.synthetic import grammar
from preparation.synthetic.speakers import MAX_SPEAKERS

DATASET = "synth"
MIN_BABBLE_SECONDS = 20.0
_SERIAL_BELOW = 64  # auto workers: make small corpora in this process (no start-up cost)


def split_speakers(num_speakers: int) -> Dict[str, List[int]]:
    """Speaker ids per split: the last ~15 % (at least one) test, the ~10 % before them
    (at least one) validation, the rest training."""
    if num_speakers < 3:
        raise ValueError(f"--num-speakers must be at least 3 (train/val/test by speaker), got {num_speakers}")
    n_test = max(1, int(round(0.15 * num_speakers)))
    n_val = max(1, int(round(0.1 * num_speakers)))
    n_train = num_speakers - n_test - n_val
    return {"train": list(range(n_train)), "val": list(range(n_train, n_train + n_val)),
            "test": list(range(n_train + n_val, num_speakers))}


def plan(num_utts: int, num_speakers: int, seed: int) -> List[Tuple[int, int, Tuple[str, ...]]]:
    """``(index, speaker id, words)`` per utterance: speakers take turns, sentences come from
    ``random.Random(seed)``."""
    rng = random.Random(seed)
    return [(n, n % num_speakers, tuple(grammar.sample_sentence(rng))) for n in range(num_utts)]


def _check(flag: str, ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"{flag} {message}")


@contextlib.contextmanager
def _single_torch_thread():
    """Run with one torch thread (the tensors here are small: threads would only wait on
    each other and on other work), then restore the caller's setting."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _make_all(jobs: Sequence, workers: int, progress: bool) -> List[int]:
    """Make every :class:`~preparation.synthetic.utterance.Job`; returns their frame counts in
    job order."""
    from preparation.synthetic.utterance import init_worker, make, run_job

    lengths: List[int] = []
    with tqdm(total=len(jobs), desc="synthetic AV corpus", unit="utt", disable=not progress) as bar:
        if workers == 1:
            from preparation.synthetic.espeak import ESpeakServer

            with ESpeakServer() as engine:
                for job in jobs:
                    lengths.append(make(job, engine))
                    bar.update(1)
        else:
            context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch state
            with context.Pool(workers, initializer=init_worker) as pool:
                for n_frames in pool.imap(run_job, jobs, chunksize=2):
                    lengths.append(n_frames)
                    bar.update(1)
    return lengths


def generate(out_dir: str, num_utts: int = 200, num_speakers: int = 10, seed: int = 0, vocab_size: int = 100,
             workers: Optional[int] = None, progress: bool = True, babble_seconds: float = 30.0) -> Dict[str, str]:
    """Write the corpus under ``out_dir``.

    Args:
        out_dir: Output root.
        num_utts: Utterances (at least ``num_speakers``: every speaker speaks).
        num_speakers: Speakers, 3..864 (split train/val/test by speaker).
        seed: Seed of the sentences, timing, noise, motion and babble (same seed -> same files).
        vocab_size: SentencePiece vocabulary size.
        workers: Processes making utterances; ``None`` or 0 picks 1 for small corpora, else
            the number of CPUs (at most 8). The output does not depend on it.
        progress: Show a tqdm progress bar.
        babble_seconds: Length of ``babble.wav`` (at least 20 s).

    Returns:
        Paths: ``train``, ``val``, ``test`` label CSVs, ``sp_model_path``, ``dict_path``,
        ``noise_file`` (babble wav) and ``root`` (the root directory the CSVs are relative to).
    """
    from datamodule.label_list import format_label_line
    from datamodule.media import load_audio, write_wav
    from datamodule.text_transform import TextTransform
    from preparation.synthetic.babble import mix_babble
    from preparation.synthetic.speakers import speaker
    from preparation.synthetic.utterance import SR, Job
    from preparation.train_tokenizer import train_tokenizer

    _check("--num-speakers", 3 <= num_speakers <= MAX_SPEAKERS,
           f"must be in [3, {MAX_SPEAKERS}] (train/val/test by speaker; {MAX_SPEAKERS} voices), got {num_speakers}")
    _check("--num-utts", num_utts >= num_speakers,
           f"must be at least --num-speakers ({num_speakers}) so that every speaker speaks, got {num_utts}")
    _check("--vocab-size", vocab_size >= 4, f"must be at least 4, got {vocab_size}")
    _check("--workers", workers is None or workers >= 0, f"must be >= 0 (0 = auto), got {workers}")
    _check("--babble-seconds", babble_seconds >= MIN_BABBLE_SECONDS,
           f"must be at least {MIN_BABBLE_SECONDS:g}, got {babble_seconds}")
    from preparation.synthetic.espeak import library_paths

    library_paths()  # fail before writing anything when eSpeak NG is not installed
    if not workers:
        workers = 1 if num_utts < _SERIAL_BELOW else max(1, min(8, os.cpu_count() or 1))

    split_of = {spk: name for name, ids in split_speakers(num_speakers).items() for spk in ids}
    jobs, rel_paths = [], []
    for index, spk, words in plan(num_utts, num_speakers, seed):
        rel = os.path.join(speaker(spk).name, f"utt{index:05d}.mp4")
        jobs.append(Job(index, spk, words, seed, os.path.join(out_dir, DATASET, rel)))
        rel_paths.append(rel)
    train_jobs = [job for job in jobs if split_of[job.speaker_id] == "train"]

    model_path, units_path = train_tokenizer([grammar.transcript(job.words) for job in train_jobs],
                                             os.path.join(out_dir, "spm", f"{DATASET}_unigram"), vocab_size)
    tokenizer = TextTransform(model_path, units_path)
    paths = {"sp_model_path": model_path, "dict_path": units_path, "root": out_dir}

    with _single_torch_thread():
        lengths = _make_all(jobs, workers, progress)

        lines: Dict[str, List[str]] = {"train": [], "val": [], "test": []}
        for job, rel, n_frames in zip(jobs, rel_paths, lengths):
            text = grammar.transcript(job.words)
            ids = tokenizer.tokenize(text).tolist()
            lines[split_of[job.speaker_id]].append(format_label_line(DATASET, rel, n_frames, ids, text))
        os.makedirs(os.path.join(out_dir, "labels"), exist_ok=True)
        for split, rows in lines.items():
            paths[split] = os.path.join(out_dir, "labels", f"{split}.csv")
            with open(paths[split], "w", encoding="utf8") as handle:
                handle.write("\n".join(rows) + "\n")

        # babble from (at most 64) training utterances, chosen with the seed
        chosen = random.Random(seed + 1).sample(train_jobs, min(64, len(train_jobs)))
        wavs = [load_audio(job.mp4_path[:-4] + ".wav", SR)[:, 0] for job in sorted(chosen, key=lambda j: j.index)]
        paths["noise_file"] = os.path.join(out_dir, "babble.wav")
        write_wav(paths["noise_file"], mix_babble(wavs, babble_seconds, seed), sample_rate=SR)
    return paths


def join_splits(paths: Dict[str, str], name: str = "all.csv") -> str:
    """One label list ``OUT/labels/<name>`` with the lines of the train, val and test lists of
    a corpus written by :func:`generate` (``paths`` is what it returned); returns its path."""
    lines: List[str] = []
    for split in ("train", "val", "test"):
        with open(paths[split], encoding="utf8") as handle:
            lines += handle.readlines()
    out = os.path.join(os.path.dirname(paths["train"]), name)
    with open(out, "w", encoding="utf8") as handle:
        handle.writelines(lines)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="Output root directory.")
    p.add_argument("--num-utts", type=int, default=200, help="Utterances. (Default: 200)")
    p.add_argument("--num-speakers", type=int, default=10,
                   help=f"Speakers, 3..{MAX_SPEAKERS}; ~15%% test, ~10%% val, rest train. (Default: 10)")
    p.add_argument("--seed", type=int, default=0, help="Seed. (Default: 0)")
    p.add_argument("--vocab-size", type=int, default=100, help="SentencePiece vocabulary size. (Default: 100)")
    p.add_argument("--workers", type=int, default=0,
                   help="Processes; 0 = auto (1 below 64 utterances, else the CPUs, at most 8). (Default: 0)")
    p.add_argument("--babble-seconds", type=float, default=30.0,
                   help=f"Length of babble.wav, at least {MIN_BABBLE_SECONDS:g}. (Default: 30)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        paths = generate(args.out, args.num_utts, args.num_speakers, args.seed, args.vocab_size,
                         workers=args.workers, babble_seconds=args.babble_seconds)
    except ValueError as err:
        if str(err).startswith("--"):
            p.error(str(err))
        raise
    elapsed = time.perf_counter() - start
    for key, value in paths.items():
        print(f"{key}: {value}")
    print(f"generated {args.num_utts} utterances in {elapsed:.1f} s ({args.num_utts / elapsed:.1f} utt/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
