"""Initialising an audio-visual model from an audio-only and a video-only model
(``train.py --init-audio-from A.pth --init-video-from V.pth``).

Which weights come from where:

=====================================  ==========================================================
audio-visual model                     source
=====================================  ==========================================================
``audio_frontend.*``                   the audio model's ``frontend.*``
``vision_frontend.*``                  the video model's ``frontend.*``
``fusion.layer.proj_audio.*``          the audio model's ``proj_encoder`` (fusions that project
                                       each stream to ``adim`` with one linear layer: ``add``,
                                       ``gated``, ``attention``, ``bottleneck``)
``fusion.layer.proj_vision.*``         the video model's ``proj_encoder`` (same fusions)
``encoder.*``, ``decoder.*``, ``ctc.*``  the model named by ``--init-encoder-from`` (``audio`` by
                                       default): the decoder and CTC head were trained on that
                                       encoder's output
the rest of the fusion layer           freshly initialised (gate, attention, concat MLP,
                                       bottleneck tokens and layers), and the missing-stream
                                       embeddings
=====================================  ==========================================================

Sizes must match (the same ``--adim``, ``--elayers``, ``--resnet-width``, tokenizer...); a
weight that does not fit is an error naming it.
"""

from typing import Dict, List, Optional

import torch

from espnet.training.cli_args import infer_legacy_modality

SHARED_PREFIXES = ("encoder.", "decoder.", "ctc.")


def _projection(state: Dict[str, torch.Tensor]) -> Optional[Dict[str, torch.Tensor]]:
    """The single-stream model's linear ``proj_encoder`` (``weight``, ``bias``), if it has one."""
    if "proj_encoder.weight" in state and "proj_encoder.bias" in state:
        return {"weight": state["proj_encoder.weight"], "bias": state["proj_encoder.bias"]}
    return None


def audio_visual_init_state(model: torch.nn.Module, audio_state: Dict[str, torch.Tensor],
                            video_state: Dict[str, torch.Tensor], encoder_from: str = "audio",
                            sources: Optional[Dict[str, str]] = None) -> Dict[str, torch.Tensor]:
    """The weights of audio-visual ``model`` taken from the two single-stream state dicts
    (see the module docstring), checked against the model's own shapes.

    Args:
        model: The audio-visual ``E2E``.
        audio_state, video_state: State dicts of an audio-only and a video-only ``E2E``.
        encoder_from: ``audio`` or ``video``: the model whose encoder, decoder and CTC are taken.
        sources: Names of the two checkpoints for messages (``{"audio": path, "video": path}``).

    Raises:
        ValueError: naming the checkpoint and the weights that are missing or do not fit.
    """
    if encoder_from not in ("audio", "video"):
        raise ValueError(f"--init-encoder-from must be audio or video, got {encoder_from!r}")
    sources = sources or {"audio": "the audio model", "video": "the video model"}
    flags = {"audio": "--init-audio-from", "video": "--init-video-from"}
    states = {"audio": audio_state, "video": video_state}
    for kind, state in states.items():
        found = infer_legacy_modality(state.keys())
        if found != kind:
            what = f"a {found}-only model" if found else "not a single-stream model with a ResNet frontend"
            article = "an" if kind == "audio" else "a"
            raise ValueError(f"{flags[kind]} {sources[kind]}: expected {article} {kind}-only model, got {what}")
    own = model.state_dict()
    out: Dict[str, torch.Tensor] = {}
    targets = {"audio": ("audio_frontend.", "proj_audio"), "video": ("vision_frontend.", "proj_vision")}
    for kind, (frontend, proj_name) in targets.items():
        state = states[kind]
        for key, value in state.items():
            if key.startswith("frontend."):
                out[frontend + key[len("frontend."):]] = value
        proj = _projection(state)
        layer = model.fusion.layer
        if proj is not None and isinstance(getattr(layer, proj_name, None), torch.nn.Linear):
            for name, value in proj.items():
                out[f"fusion.layer.{proj_name}.{name}"] = value
    for key, value in states[encoder_from].items():
        if key.startswith(SHARED_PREFIXES):
            out[key] = value
    bad: List[str] = [k for k, v in out.items() if k not in own or own[k].shape != v.shape]
    if bad:
        detail = ", ".join(f"{k} {tuple(out[k].shape)} vs {tuple(own[k].shape) if k in own else 'absent'}"
                           for k in bad[:4])
        raise ValueError(f"--init-audio-from/--init-video-from: weights that do not fit this model ({detail}"
                         f"{', ...' if len(bad) > 4 else ''}); use the same model sizes and tokenizer")
    needed = [k for k in own if k.startswith(("audio_frontend.", "vision_frontend.") + SHARED_PREFIXES)]
    absent = [k for k in needed if k not in out]
    if absent:
        raise ValueError(f"--init-audio-from/--init-video-from: the checkpoints lack {len(absent)} weight(s) of this "
                         f"model, e.g. {', '.join(absent[:4])}")
    return out
