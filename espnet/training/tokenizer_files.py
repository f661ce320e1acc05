"""SentencePiece tokenizer files that travel with a run directory or an export folder,
referred to by paths relative to it."""

import filecmp
import os
import shutil
from typing import Any, Dict, Optional

from espnet.utils.atomic_write import atomic_open

TOKENIZER_KEYS = ("sp_model_path", "dict_path")
TOKENIZER_SUBDIR = "tokenizer"


def tokenizer_names(sp_model_path: Optional[str], dict_path: Optional[str],
                    subdir: str = TOKENIZER_SUBDIR) -> Dict[str, Optional[str]]:
    """Where :func:`copy_tokenizer` puts the files, relative to its ``dest_dir``
    (``subdir/<file name>``; ``None`` for a file not given)."""
    out = {key: (os.path.join(subdir, os.path.basename(src)) if subdir else os.path.basename(src))
           if src is not None else None for key, src in zip(TOKENIZER_KEYS, (sp_model_path, dict_path))}
    if out["sp_model_path"] is not None and out["sp_model_path"] == out["dict_path"]:
        raise ValueError(f"--sp-model-path and --dict-path have the same file name {out['dict_path']}")
    return out


def copy_tokenizer(sp_model_path: Optional[str], dict_path: Optional[str], dest_dir: str,
                   subdir: str = TOKENIZER_SUBDIR) -> Dict[str, Optional[str]]:
    """Copy the tokenizer files into ``dest_dir/subdir`` (same file names) and return their
    paths relative to ``dest_dir`` (``None`` for a file not given: a decoder with its own
    tokenizer has none). A file already there with the same content is kept; one with
    other content is an error (another tokenizer was used in this directory before)."""
    names = tokenizer_names(sp_model_path, dict_path, subdir)
    for key, src in zip(TOKENIZER_KEYS, (sp_model_path, dict_path)):
        if src is None:
            continue
        if not os.path.isfile(src):
            raise FileNotFoundError(f"--{key.replace('_', '-')}: file not found: {src}")
        dst = os.path.join(dest_dir, names[key])
        if os.path.isfile(dst):
            if not filecmp.cmp(src, dst, shallow=False):
                raise ValueError(f"{dst} already holds a different tokenizer file than {src}; a directory keeps "
                                 f"one tokenizer (train with another --exp-name, or pass {dst})")
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            # atomic, through a temporary file of its own: DDP ranks may copy at the same time
            with open(src, "rb") as source, atomic_open(dst, "wb") as target:
                shutil.copyfileobj(source, target)
    return names


def resolve_tokenizer_paths(meta: Dict[str, Any], base_dir: str) -> Dict[str, Any]:
    """``meta`` with relative tokenizer paths made absolute against ``base_dir`` (the
    directory of the checkpoint that recorded them); absolute paths and ``None`` are kept."""
    out = dict(meta)
    for key in TOKENIZER_KEYS:
        value = out.get(key)
        if isinstance(value, str) and value and not os.path.isabs(value):
            out[key] = os.path.join(os.path.abspath(base_dir), value)
    return out


def relative_tokenizer_paths(meta: Dict[str, Any], base_dir: str) -> Dict[str, Any]:
    """The tokenizer paths of ``meta`` that lie under ``base_dir``, made relative to it (so
    that the directory can move); others stay as they are."""
    out = {}
    base = os.path.abspath(base_dir)
    for key in TOKENIZER_KEYS:
        value = meta.get(key)
        if isinstance(value, str) and os.path.commonpath([base, os.path.abspath(value)]) == base:
            value = os.path.relpath(os.path.abspath(value), base)
        if key in meta:
            out[key] = value
    return out


FINGERPRINT_KEY = "tokenizer_fingerprint"


def check_same_tokenizer(tokenizer: Any, given: Dict[str, Optional[str]], meta: Dict[str, Any], source: str) -> None:
    """Refuse a tokenizer given on the command line (``--sp-model-path``/``--dict-path``)
    that is not the one the checkpoint ``source`` was trained with: its ids would decode
    to other words, silently.

    The checkpoint's tokenizer is known by its fingerprint (``tokenizer_fingerprint``,
    written by ``train.py`` since it was added; see
    :attr:`~datamodule.text_transform.TextTransform.fingerprint`), else by the files its
    ``sp_model_path``/``dict_path`` name, when they are still there. A checkpoint that
    records neither is not checked (as before).

    Args:
        tokenizer: The ``TextTransform`` built from the given files (with the
            checkpoint's for a flag not given), or ``None``.
        given: ``{"sp_model_path": flag value or None, "dict_path": ...}``.
        meta: The checkpoint's hyper-parameters (tokenizer paths made absolute).
        source: The checkpoint, as named in the message.

    Raises:
        ValueError: one line naming the given files and the checkpoint's.
    """
    if tokenizer is None or not any(given.values()):
        return
    recorded = {key: meta.get(key) for key in TOKENIZER_KEYS}
    expected = meta.get(FINGERPRINT_KEY)
    if expected is None:
        if not all(isinstance(p, str) and os.path.isfile(p) for p in recorded.values()):
            return  # no record of the checkpoint's tokenizer to compare with
        if all(os.path.realpath(given[k] or recorded[k]) == os.path.realpath(recorded[k]) for k in TOKENIZER_KEYS):
            return
        from datamodule.text_transform import TextTransform

        expected = TextTransform(recorded["sp_model_path"], recorded["dict_path"]).fingerprint
    if tokenizer.fingerprint == expected:
        return
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in given.items() if v)
    theirs = ", ".join(str(v) for v in recorded.values() if v) or "files no longer recorded"
    raise ValueError(f"{flags}: not the tokenizer {source} was trained with ({theirs}; the pieces differ), so its "
                     f"token ids would decode to other words; leave the flag(s) out to use the checkpoint's tokenizer, "
                     f"or pass its files")
