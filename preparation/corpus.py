"""Finding the clips of a raw talking-face corpus and reading their transcripts.

Two layouts are understood:

* ``lrs`` (LRS2 / LRS3): ``INPUT/<split>/<speaker or video id>/<clip>.mp4`` with
  ``<clip>.txt`` next to it whose first line is ``Text:  THE WORDS`` (later lines, e.g.
  ``Conf:`` and word timings, are ignored). The first folder names the split
  (``pretrain``, ``trainval``, ``test`` for LRS3; ``main``, ``pretrain`` for LRS2).
* ``plain``: ``<clip>.mp4`` anywhere under ``INPUT`` with ``<clip>.txt`` holding only the
  transcript (all its lines, joined). Every clip belongs to one split (its name is chosen
  by the caller).

``--split-file NAME=PATH`` lists (LRS2's ``train.txt``/``val.txt``/``test.txt`` style:
first token of each line is a clip id without extension) regroup clips into named splits.

Transcripts are normalised to upper case with single spaces (the legacy tokenizers were
trained on upper-case text).
"""

import os
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence

VIDEO_EXTENSIONS = (".mp4",)
LRS_PREFIX = "Text:"


@dataclass(frozen=True)
class Clip:
    """One source clip.

    Attributes:
        rel_path: Path of the video relative to the corpus folder (``/``-separated), kept in
            the processed tree (``OUT/<dataset>/<rel_path>``, extension ``.mp4``).
        video_path: Absolute path of the source video.
        transcript_path: Path of the ``.txt`` next to the video (may not exist).
        split: Split name (``trainval``, ``test``, ``train``, ...).
    """

    rel_path: str
    video_path: str
    transcript_path: str
    split: str

    @property
    def clip_id(self) -> str:
        """``rel_path`` without its extension."""
        return os.path.splitext(self.rel_path)[0]


def normalise_text(text: str) -> str:
    """Upper case, whitespace runs -> one space, stripped."""
    return " ".join(text.upper().split())


def read_transcript(path: str, layout: str) -> str:
    """The normalised transcript of one clip.

    Args:
        path: The clip's ``.txt``.
        layout: ``lrs`` (first line ``Text:  WORDS``) or ``plain`` (the whole file).

    Returns:
        The normalised text; ``""`` when the file holds no words.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an ``lrs`` transcript whose first line does not start with ``Text:``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"transcript not found: {path}")
    with open(path, encoding="utf-8-sig") as handle:  # a byte-order mark is not text
        content = handle.read()
    if layout == "plain":
        return normalise_text(content)
    if layout != "lrs":
        raise ValueError(f"unknown layout {layout!r}; choose lrs or plain")
    first = content.lstrip("\ufeff").split("\n", 1)[0]
    if not first.startswith(LRS_PREFIX):
        raise ValueError(f"{path}: an LRS transcript starts with '{LRS_PREFIX}  THE WORDS', got {first[:60]!r}")
    return normalise_text(first[len(LRS_PREFIX):])


def _videos_under(root: str, exclude: Optional[str]) -> List[str]:
    """Relative (``/``-separated) paths of every video under ``root``, sorted; ``exclude``
    (a folder) is not descended into."""
    found = []
    exclude = os.path.abspath(exclude) if exclude else None
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not (exclude and os.path.abspath(os.path.join(dirpath, d)) == exclude))
        for name in filenames:
            if name.lower().endswith(VIDEO_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return sorted(found)


def detect_layout(root: str, rel_paths: Sequence[str]) -> str:
    """``lrs`` when every video is two folders deep and the first transcript found starts
    with ``Text:``; else ``plain``."""
    if not rel_paths or any(p.count("/") != 2 for p in rel_paths):
        return "plain"
    for rel in rel_paths:
        txt = os.path.join(root, os.path.splitext(rel)[0] + ".txt")
        if os.path.isfile(txt):
            with open(txt, encoding="utf8") as handle:
                return "lrs" if handle.readline().lstrip("\ufeff").startswith(LRS_PREFIX) else "plain"
    return "plain"


def _parse_split_files(split_files: Dict[str, str]) -> Dict[str, List[tuple]]:
    """``NAME -> [(entry, "file:line"), ...]`` from the split list files."""
    out: Dict[str, List[tuple]] = {}
    for name, path in split_files.items():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--split-file {name}={path}: file not found")
        entries = []
        with open(path, encoding="utf-8-sig") as handle:
            for line_no, line in enumerate(handle, 1):
                parts = line.split()
                if parts:
                    entries.append((os.path.splitext(parts[0].strip("/"))[0], f"{path}:{line_no}"))
        if not entries:
            raise ValueError(f"--split-file {name}={path}: the file lists no clips")
        out[name] = entries
    return out


def _assign_split_files(rel_paths: Sequence[str], split_files: Dict[str, str]) -> Dict[str, str]:
    """``rel_path -> split`` from split list files. An entry matches the clip whose id
    (path without extension) equals it or ends with ``/`` + it (LRS2 lists omit ``main/``)."""
    by_suffix: Dict[str, List[str]] = {}
    for rel in rel_paths:
        parts = os.path.splitext(rel)[0].split("/")
        for k in range(len(parts)):
            by_suffix.setdefault("/".join(parts[k:]), []).append(rel)
    assigned: Dict[str, str] = {}
    for name, entries in _parse_split_files(split_files).items():
        for entry, where in entries:
            matches = by_suffix.get(entry, [])
            if not matches:
                raise ValueError(f"{where}: no video {entry}.mp4 in the corpus folder")
            if len(matches) > 1:
                raise ValueError(f"{where}: {entry!r} matches several videos ({', '.join(matches[:3])}); "
                                 f"write the longer path")
            rel = matches[0]
            if rel in assigned and assigned[rel] != name:
                raise ValueError(f"{where}: {rel} is listed in both split {assigned[rel]!r} and {name!r}")
            assigned[rel] = name
    return assigned


def find_clips(root: str, layout: str = "auto", split_name: str = "train", splits: Optional[Iterable[str]] = None,
               split_files: Optional[Dict[str, str]] = None, exclude: Optional[str] = None) -> tuple:
    """Every clip of the corpus folder ``root``.

    Args:
        root: Corpus folder.
        layout: ``lrs``, ``plain`` or ``auto`` (see :func:`detect_layout`).
        split_name: Split of every clip in the ``plain`` layout.
        splits: Keep only these splits (``None``: all).
        split_files: ``NAME -> list file``; when given, only listed clips are kept, in split NAME.
        exclude: A folder under ``root`` not to search (the output, if it lies there).

    Returns:
        ``(clips sorted by rel_path, the layout used)``.

    Raises:
        FileNotFoundError / ValueError naming the folder, flag or list line.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--input-dir: folder not found: {root}")
    if layout not in ("auto", "lrs", "plain"):
        raise ValueError(f"--layout must be auto, lrs or plain, got {layout!r}")
    rel_paths = _videos_under(root, exclude)
    if not rel_paths:
        raise ValueError(f"--input-dir {root}: no {'/'.join(VIDEO_EXTENSIONS)} videos found")
    if layout == "auto":
        layout = detect_layout(root, rel_paths)
    if layout == "lrs":
        bad = [p for p in rel_paths if p.count("/") != 2]
        if bad:
            raise ValueError(f"--layout lrs expects <split>/<speaker>/<clip>.mp4 under {root}, got {bad[0]}")
    if split_files:
        assigned = _assign_split_files(rel_paths, split_files)
        pairs = [(rel, assigned[rel]) for rel in rel_paths if rel in assigned]
    elif layout == "lrs":
        pairs = [(rel, rel.split("/", 1)[0]) for rel in rel_paths]
    else:
        pairs = [(rel, split_name) for rel in rel_paths]
    if splits is not None:
        wanted = list(splits)
        present = sorted({s for _, s in pairs})
        missing = [s for s in wanted if s not in present]
        if missing:
            raise ValueError(f"--splits: no split {', '.join(missing)} in {root} (found: {', '.join(present)})")
        pairs = [(rel, s) for rel, s in pairs if s in wanted]
    clips = [Clip(rel, os.path.abspath(os.path.join(root, rel)),
                  os.path.abspath(os.path.join(root, os.path.splitext(rel)[0] + ".txt")), split)
             for rel, split in pairs]
    return clips, layout
