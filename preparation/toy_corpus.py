"""A tiny, fast, deterministic audio-visual corpus for tests and smoke runs.

Each word of a small GRID-like vocabulary has its own tone pair (audio) and its own
mouth-opening trajectory (video), so a model can learn it in minutes on a CPU. Speakers
differ in pitch shift, face brightness and mouth size; the test split uses unseen speakers.

    python -m preparation.toy_corpus --out data/toy --num-utts 60

writes ``OUT/toy/<speaker>/<utt>.{mp4,wav}``, ``OUT/labels/{train,val,test}.csv`` (legacy
4 columns + transcript), and ``OUT/spm/toy_unigram.model`` + ``OUT/spm/toy_unigram_units.txt``.
"""

import argparse
import math
import os
import sys
from typing import Dict, List

import torch
from tqdm import tqdm

WORDS = ["bin", "lay", "place", "set", "blue", "green", "red", "white", "at", "by", "in", "with",
         "one", "two", "three", "four", "now", "soon", "again", "please"]
FPS, SR = 25, 16000
FRAMES_PER_WORD = 12
SAMPLES_PER_FRAME = SR // FPS


def _word_table(seed: int = 1234) -> Dict[str, Dict[str, torch.Tensor]]:
    """Per word: two tones from a log-spaced grid (neighbours 13 % apart, more than any
    speaker's pitch shift) and a mouth opening/width trajectory."""
    gen = torch.Generator().manual_seed(seed)
    n = len(WORDS)
    grid = 300.0 * torch.logspace(0, 1, n)  # 300 Hz .. 3 kHz
    table = {}
    for i, word in enumerate(WORDS):
        table[word] = {
            "freqs": torch.stack([grid[i], grid[(7 * i + 3) % n]]),
            "open": 0.15 + 0.85 * torch.rand(FRAMES_PER_WORD, generator=gen),
            "width": 0.6 + 0.4 * torch.rand(FRAMES_PER_WORD, generator=gen),
        }
    return table


def synthesize(words: List[str], speaker: int, gen: torch.Generator, table) -> Dict[str, torch.Tensor]:
    """Audio ``(S,)`` in [-1, 1] and gray frames ``(T, 96, 96)`` uint8 for ``words``."""
    pitch = 1.0 + 0.025 * ((speaker % 5) - 2)
    brightness = 90 + 15 * (speaker % 4)
    mouth = 1.0 + 0.07 * ((speaker % 3) - 1)
    n_frames = FRAMES_PER_WORD * len(words) + 4
    audio = torch.zeros(n_frames * SAMPLES_PER_FRAME)
    opening = torch.full((n_frames,), 0.1)
    width = torch.full((n_frames,), 0.7)
    t = torch.arange(FRAMES_PER_WORD * SAMPLES_PER_FRAME) / SR
    env = torch.hann_window(t.numel(), periodic=False)
    for i, word in enumerate(words):
        spec = table[word]
        f = spec["freqs"] * pitch
        tone = (torch.sin(2 * math.pi * f[0] * t) + 0.6 * torch.sin(2 * math.pi * f[1] * t)) * env
        s0 = (2 + i * FRAMES_PER_WORD) * SAMPLES_PER_FRAME
        audio[s0 : s0 + t.numel()] += 0.4 * tone
        opening[2 + i * FRAMES_PER_WORD : 2 + (i + 1) * FRAMES_PER_WORD] = spec["open"]
        width[2 + i * FRAMES_PER_WORD : 2 + (i + 1) * FRAMES_PER_WORD] = spec["width"]
    audio += 0.01 * torch.randn(audio.numel(), generator=gen)
    yy, xx = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    jitter = torch.randn(n_frames, 2, generator=gen) * 0.8
    cy = 52 + jitter[:, 0].view(-1, 1, 1)
    cx = 48 + jitter[:, 1].view(-1, 1, 1)
    ry = (3 + 14 * opening * mouth).view(-1, 1, 1)
    rx = (14 + 14 * width * mouth).view(-1, 1, 1)
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    frames = torch.full((n_frames, 96, 96), float(brightness))
    frames = torch.where(inside, torch.full_like(frames, 25.0), frames)
    frames += torch.randn(frames.shape, generator=gen) * 4
    return {"audio": audio.clamp(-1, 1), "frames": frames.clamp(0, 255).to(torch.uint8)}


def generate(out_dir: str, num_utts: int = 60, num_speakers: int = 6, seed: int = 0, vocab_size: int = 40,
             progress: bool = True) -> Dict[str, str]:
    """Write the corpus; returns paths of the label lists and tokenizer files."""
    from datamodule.label_list import format_label_line
    from datamodule.media import write_video, write_wav
    from datamodule.text_transform import TextTransform
    from preparation.train_tokenizer import train_tokenizer

    if num_speakers < 3:
        raise ValueError(f"--num-speakers must be at least 3 (train/val/test by speaker), got {num_speakers}")
    gen = torch.Generator().manual_seed(seed)
    table = _word_table()
    test_spk = {num_speakers - 1}
    val_spk = {num_speakers - 2}
    utts = []
    for n in range(num_utts):
        speaker = n % num_speakers
        n_words = 3 + int(torch.randint(0, 3, (1,), generator=gen))
        words = [WORDS[int(i)] for i in torch.randint(0, len(WORDS), (n_words,), generator=gen)]
        utts.append((speaker, f"utt{n:05d}", " ".join(words).upper()))
    spm_prefix = os.path.join(out_dir, "spm", "toy_unigram")
    train_text = [text for spk, _, text in utts if spk not in test_spk | val_spk]
    model_path, units_path = train_tokenizer(train_text + [" ".join(WORDS).upper()], spm_prefix, vocab_size)
    tokenizer = TextTransform(model_path, units_path)
    lines: Dict[str, List[str]] = {"train": [], "val": [], "test": []}
    for speaker, name, text in tqdm(utts, desc="toy corpus", disable=not progress, unit="utt"):
        sample = synthesize(text.lower().split(), speaker, gen, table)
        rel = os.path.join(f"spk{speaker:02d}", f"{name}.mp4")
        path = os.path.join(out_dir, "toy", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_video(path, sample["frames"])
        write_wav(path[:-4] + ".wav", sample["audio"])
        split = "test" if speaker in test_spk else "val" if speaker in val_spk else "train"
        lines[split].append(format_label_line("toy", rel, sample["frames"].size(0), tokenizer.tokenize(text).tolist(), text))
    os.makedirs(os.path.join(out_dir, "labels"), exist_ok=True)
    paths = {"sp_model_path": model_path, "dict_path": units_path}
    for split, rows in lines.items():
        paths[split] = os.path.join(out_dir, "labels", f"{split}.csv")
        with open(paths[split], "w", encoding="utf8") as handle:
            handle.write("\n".join(rows) + "\n")
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="Output root directory.")
    p.add_argument("--num-utts", type=int, default=60, help="Utterances. (Default: 60)")
    p.add_argument("--num-speakers", type=int, default=6, help="Speakers (last is test, second last val). (Default: 6)")
    p.add_argument("--seed", type=int, default=0, help="Seed. (Default: 0)")
    p.add_argument("--vocab-size", type=int, default=40, help="SentencePiece vocabulary size. (Default: 40)")
    args = p.parse_args(argv)
    paths = generate(args.out, args.num_utts, args.num_speakers, args.seed, args.vocab_size)
    for key, value in paths.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
