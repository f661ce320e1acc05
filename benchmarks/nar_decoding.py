"""Non-autoregressive decoding against the beam search: WER and decoding speed, side by side.

    python benchmarks/nar_decoding.py --out exp/nar_decoding [--data exp/synthetic_wer/data]

For audio-only, video-only and audio-visual models trained on the generated corpus
(``preparation.synthetic_av``, test speakers unseen; the corpus of
``benchmarks/synthetic_wer.py`` is reused with ``--data``), two models per modality with the
same frontend, encoder size and epochs, trained by ``train.py`` as the WER-vs-SNR benchmark
trains them (the video model starts from the audio model's back-end with
``--transfer-backend``; the audio-visual model from both with ``--init-audio-from
--init-video-from``):

* an autoregressive one (``--decoder transformer``), decoded (a) by the joint CTC/attention beam
  search (``--beam-size``, batched ``--batch-size`` utterances at a time) and (b) by its CTC head
  alone (``eval.py --decode-mode ctc-greedy``);
* a Paraformer (``--decoder paraformer``), decoded in one parallel pass, and with
  ``--nar-candidates`` one-pass hypotheses of neighbouring token counts rescored by its CTC
  head (``eval.py --nar-candidates``); both for each ``--nar-counts`` value (``eval.py
  --nar-count``: the counts taken around the CIF predictor's, the CTC head's best path's, or
  both).

With ``--paraformer-encoder ar`` each modality's Paraformer starts instead from that modality's
autoregressive model's encoder (``--transfer-encoder``), and the autoregressive model it is
compared with is trained as long the same way (its encoder from that model, a new decoder); with
``ar-frozen`` the Paraformer's decoder and CTC head are trained on that encoder frozen
(``--freeze-param``), so both models share one encoder and the autoregressive model itself is
the comparison. ``--dry-run`` prints the ``train.py`` commands instead of running anything.

Each is decoded clean and with babble at ``--snrs`` (default clean and -5 dB), and the table
gives the test WER (``--split val``: the validation split's, other unseen speakers), its ratio
to the beam search's (clean), and two decoding speeds with their
ratio to the beam search of the same modality: utterances per second of the clean pass as
``eval.py`` runs it (media loading and the encoder included, same batches and threads), and of
the decoding step alone (beam search, CTC greedy or the Paraformer's pass) on the same batches'
encoder outputs, computed beforehand, the rows timed side by side (``--speed-rounds`` rounds,
each row's pass in turn, the best round of each).
Writes ``OUT/results.md`` and ``OUT/results.json``; models with a checkpoint in OUT are reused.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

MODALITIES = {"audio": ["--audio-encoder", "resnet1d"], "video": ["--vision-encoder", "resnet"],
              "audiovisual": ["--vision-encoder", "resnet", "--audio-encoder", "resnet1d"]}


def averaged_model(run_dir: str) -> Optional[str]:
    found = sorted(f for f in os.listdir(run_dir) if f.startswith("model_avg_") and f.endswith(".pth")) \
        if os.path.isdir(run_dir) else []
    return os.path.join(run_dir, found[0]) if found else None


def paraformer_variant(args) -> Tuple[str, str, List[str]]:
    """How the Paraformer differs from the Transformer decoder's settings and its own defaults
    (``--paraformer-dlayers``, ``--paraformer-sampling-ratio``, ``--paraformer-ar-dlayers``,
    ``--paraformer-ar-from-ar``, ``--paraformer-detach-encoder``, ``--paraformer-live-predictor``,
    ``--paraformer-queries``, ``--paraformer-encoder``): its run folder's suffix
    (another Paraformer, another folder), its table label's suffix and its extra ``train.py``
    flags."""
    folder, label, flags = "", "", []
    if args.paraformer_dlayers and args.paraformer_dlayers != args.dlayers:
        folder += f"_dlayers{args.paraformer_dlayers}"
        label += f" ({args.paraformer_dlayers} decoder blocks)"
    if args.paraformer_sampling_ratio is not None:
        folder += f"_sampling{args.paraformer_sampling_ratio:g}"
        label += (" (no glancing sampler)" if args.paraformer_sampling_ratio == 0
                  else f" (sampling ratio {args.paraformer_sampling_ratio:g})")
        flags += ["--paraformer-sampling-ratio", str(args.paraformer_sampling_ratio)]
    if args.paraformer_ar_from_ar:  # the AR model's decoder itself, frozen: nothing of it trains
        folder += "_arscorer"
        label += " (the AR model's decoder as its scorer)"
        flags += ["--paraformer-ar-dlayers", str(args.paraformer_ar_dlayers), "--paraformer-ar-weight", "0",
                  "--transfer-ar-scorer"]
    elif args.paraformer_ar_dlayers:
        folder += f"_ar{args.paraformer_ar_dlayers}"
        blocks = "1 block" if args.paraformer_ar_dlayers == 1 else f"{args.paraformer_ar_dlayers} blocks"
        label += f" (auxiliary AR decoder, {blocks})"
        flags += ["--paraformer-ar-dlayers", str(args.paraformer_ar_dlayers)]
    if args.paraformer_detach_encoder:
        folder += "_detached"
        label += " (trained on the detached encoder output)"
        flags += ["--paraformer-detach-encoder"]
    if args.paraformer_live_predictor:
        folder += "_live"
        label += " (its predictor on the live encoder)"
        flags += ["--paraformer-live-predictor"]
    if args.paraformer_queries == "ctc":
        folder += "_ctcqueries"
        label += " (CTC queries)"
        flags += ["--paraformer-queries", "ctc"]
    if args.paraformer_encoder == "ar":
        folder += "_initar"
        label += " (encoder from the AR model)"
    elif args.paraformer_encoder == "ar-frozen":
        folder += "_frozenar"
        label += " (on the AR model's frozen encoder)"
    return folder, label, flags


def train(args, data: Dict[str, str], modality: str, decoder: str, extra: List[str], suffix: str = "") -> str:
    """``OUT/<modality>_<decoder><suffix>/model_avg_N.pth``, trained by ``train.py`` unless
    present (with ``--dry-run`` only printed: the path it will have)."""
    dlayers = args.paraformer_dlayers if decoder == "paraformer" and args.paraformer_dlayers else args.dlayers
    if decoder == "paraformer":
        suffix, _, flags = paraformer_variant(args)
        extra = [*extra, *flags]
    run_dir = os.path.join(args.out, f"{modality}_{decoder}{suffix}")
    found = averaged_model(run_dir)
    if found:
        print(f"[{modality} {decoder}{suffix}] reusing {found}", flush=True)
        return found
    epochs = {"audio": args.epochs_audio, "video": args.epochs_video, "audiovisual": args.epochs_av}[modality]
    lr = args.lr if modality == "audio" else args.lr_init
    fusion = ["--fusion-type", args.fusion] if modality == "audiovisual" else []
    cmd = [sys.executable, os.path.join(REPO, "train.py"), "--exp-dir", args.out, "--exp-name",
           os.path.basename(run_dir), *MODALITIES[modality], *fusion, "--decoder", decoder,
           "--root-dir", data["root"], "--train-file", "train.csv", "--val-file", "val.csv",
           "--sp-model-path", data["sp_model_path"], "--dict-path", data["dict_path"],
           "--adim", str(args.adim), "--aheads", "4", "--eunits", str(4 * args.adim), "--elayers", str(args.elayers),
           "--dunits", str(4 * args.adim), "--dlayers", str(dlayers), "--resnet-width", str(args.resnet_width),
           "--max-epochs", str(epochs), "--warmup-epochs", str(args.warmup_epochs if modality == "audio" else 1),
           "--lr", str(lr), "--ctc-weight", str(args.ctc_weight), "--max-frames", str(args.max_frames),
           "--average-last", str(min(args.average_last, epochs)), "--num-workers", "0",
           "--num-threads", str(args.threads), "--seed", str(args.seed), "--precision", args.precision, *extra]
    if args.dry_run:
        print(" ".join(cmd), flush=True)
        return os.path.join(run_dir, f"model_avg_{min(args.average_last, epochs)}.pth")
    os.makedirs(run_dir, exist_ok=True)
    start = time.perf_counter()
    with open(os.path.join(run_dir, "train.log"), "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        print(f"[{modality} {decoder}] training ({os.path.join(run_dir, 'train.log')})", flush=True)
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=REPO))
    if code != 0 or not averaged_model(run_dir):
        raise SystemExit(f"[{modality} {decoder}] training failed (exit {code}); see {run_dir}/train.log")
    print(f"[{modality} {decoder}] trained in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    return averaged_model(run_dir)


def encoder_parts(modality: str) -> List[str]:
    """The top-level modules ``train.py --transfer-encoder`` takes into a ``modality`` model,
    which ``--paraformer-encoder ar-frozen`` freezes."""
    from espnet.training.model_module import AV_TRANSFER_PREFIXES, TRANSFER_PREFIXES

    prefixes = AV_TRANSFER_PREFIXES if modality == "audiovisual" else TRANSFER_PREFIXES
    return [prefix.rstrip(".") for prefix in prefixes["encoder"]]


def train_all(args, data: Dict[str, str], modalities: List[str]) -> Dict[str, Dict[str, str]]:
    """The checkpoint of each decoder (``transformer``: the model the beam search and CTC greedy
    rows decode; ``paraformer``) and modality, trained where missing: audio first, the video
    model from the audio model's back-end, the audio-visual one from both; with
    ``--paraformer-encoder ar``/``ar-frozen`` the Paraformers from the autoregressive models
    (see the module's docstring)."""
    dropout = ["--modality-dropout", "0.5"]
    own = ["transformer", "paraformer"] if args.paraformer_encoder == "own" else ["transformer"]
    ckpts: Dict[str, Dict[str, str]] = {}
    for decoder in own:
        ckpts[decoder] = {"audio": train(args, data, "audio", decoder, [])}
        if {"video", "audiovisual"} & set(modalities):
            ckpts[decoder]["video"] = train(args, data, "video", decoder,
                                            ["--pretrained-model-path", ckpts[decoder]["audio"], "--transfer-backend"])
        if "audiovisual" in modalities:
            ckpts[decoder]["audiovisual"] = train(args, data, "audiovisual", decoder,
                                                  ["--init-audio-from", ckpts[decoder]["audio"], "--init-video-from",
                                                   ckpts[decoder]["video"], *dropout])
    if args.paraformer_encoder == "own":
        return ckpts
    first = ckpts["transformer"]
    ckpts["paraformer"] = {}
    for modality in modalities:
        take = ["--pretrained-model-path", first[modality], "--transfer-encoder",
                *(dropout if modality == "audiovisual" else [])]
        freeze = ["--freeze-param", *encoder_parts(modality), *(["decoder.ar_decoder"] if args.paraformer_ar_from_ar
                                                                else [])] if args.paraformer_encoder == "ar-frozen" else []
        ckpts["paraformer"][modality] = train(args, data, modality, "paraformer", [*take, *freeze])
        if args.paraformer_encoder == "ar":  # the comparison: trained as long, the same way
            ckpts["transformer"][modality] = train(args, data, modality, "transformer", take, suffix="_initar")
    return ckpts


@dataclass(frozen=True)
class Method:
    """One row of the table: its label, the model it decodes (``decoder``: ``transformer`` or
    ``paraformer``) and how (``options``: ``DecodeOptions``, as ``eval.py``'s flags give them)."""

    label: str
    decoder: str
    options: Any


def paraformer_label(para: str, count: str, candidates: int, scorer: str = "paraformer", alternatives: int = 0,
                     ctc_path: bool = False, ar_top: int = 0, fusion: float = 0.0) -> str:
    """A Paraformer row's label: ``para`` decoded with ``--nar-count count``,
    ``--nar-candidates candidates``, ``--nar-scorer scorer``, ``--nar-alternatives
    alternatives``, (``ctc_path``) ``--nar-ctc-candidate``, ``--nar-ar-top ar_top`` and
    ``--nar-ctc-fusion fusion``."""
    label = paraformer_count_label(para, count, candidates)
    if fusion:
        label += f" (tokens fused with the CTC head's, weight {fusion:g})"
    if alternatives:
        label += f" (+{alternatives} token alternatives each)"
    if ctc_path:
        label += " (+ the CTC head's best path)"
    if scorer == "paraformer" or (candidates == 1 and count != "both" and not alternatives and not ctc_path):
        return label
    label += " and the AR decoder" if scorer == "ar" else " and the mean of both decoders"
    return label + (f" on the {ar_top} best by the Paraformer's" if ar_top else "")


def paraformer_count_label(para: str, count: str, candidates: int) -> str:
    """:func:`paraformer_label` before the scorer."""
    if count == "cif":
        return para if candidates == 1 else f"{para}, {candidates} candidates rescored with CTC"
    if count == "ctc":
        return (f"{para}, one pass at the CTC head's count" if candidates == 1 else
                f"{para}, {candidates} candidates around the CTC head's count rescored with CTC")
    return (f"{para}, the CIF and the CTC head's counts rescored with CTC" if candidates == 1 else
            f"{para}, {candidates} candidates around the CIF and around the CTC head's count rescored with CTC")


def held_out_split(root: str, split: str, model, cache: Dict[tuple, object]):
    """The held-out ``split`` (``test`` or ``val``) as ``model`` reads it, built once per
    modality and audio normalisation (the methods of a modality share it)."""
    from datamodule.data_module import build_dataset

    key = (model.modality, model.audio_utterance_norm)
    if key not in cache:
        cache[key] = build_dataset(root, f"{split}.csv", "test", model.modality,
                                   audio_utterance_norm=model.audio_utterance_norm)
    return cache[key]


def encoded_batches(model, dataset, batch_size: int, device: str = "cpu") -> List[Tuple[Any, Any]]:
    """The held-out split's encoder outputs ``(memory (B, T, D), lengths (B,))`` per batch of
    ``batch_size`` (``length_sorted_batches``, as ``eval.py`` batches it), computed once,
    untimed (under bf16 autocast for a checkpoint trained so, as ``eval.py`` decodes it)."""
    import torch

    from espnet.asr.evaluate import length_sorted_batches
    from espnet.asr.recognizer import STREAMS, encode_utterances

    bf16 = model.config.pretrained_dtype == "bfloat16"
    with torch.no_grad(), torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
        return [encode_utterances(model, [{k: v.to(device) for k, v in dataset[i].items() if k in STREAMS}
                                          for i in batch])
                for batch in length_sorted_batches(dataset.input_lengths, batch_size)]


def step_speeds(runs: List[Tuple[Any, List[Tuple[Any, Any]], Any]], rounds: int, device: str = "cpu") -> List[float]:
    """Utterances per second of the decoding step alone (beam search, CTC greedy or the
    Paraformer's pass: ``decode_memory``) of each ``(model, encoded batches, options)`` of
    ``runs`` (:func:`encoded_batches`): what is left once media loading and the encoder are
    taken out. Side by side: ``rounds`` rounds, each timing every run's pass over all its
    batches in turn, the best round of each kept (a short burst of other load then slows one
    round, not one row). Under bf16 autocast for a checkpoint trained so; on a GPU each step
    is timed between two ``torch.cuda.synchronize()``."""
    import time

    import torch

    from espnet.asr.recognizer import decode_memory

    kind = torch.device(device).type
    sync = (lambda: torch.cuda.synchronize(device)) if kind == "cuda" else (lambda: None)
    best = [float("inf")] * len(runs)
    for _ in range(rounds):
        for j, (model, batches, options) in enumerate(runs):
            bf16 = model.config.pretrained_dtype == "bfloat16"
            seconds = 0.0
            with torch.no_grad(), torch.autocast(kind, dtype=torch.bfloat16, enabled=bf16):
                for memory, lengths in batches:
                    sync()
                    start = time.perf_counter()
                    decode_memory(model, memory, lengths, options)
                    sync()
                    seconds += time.perf_counter() - start
            best[j] = min(best[j], seconds)
    return [sum(int(lengths.numel()) for _, lengths in batches) / seconds
            for (_, batches, _), seconds in zip(runs, best)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="exp/nar_decoding", help="Output folder. (Default: exp/nar_decoding)")
    p.add_argument("--data", default=None, help="An existing generated corpus. (Default: OUT/data, generated)")
    p.add_argument("--num-utts", type=int, default=2000, help="Corpus size when generated. (Default: 2000)")
    p.add_argument("--num-speakers", type=int, default=30, help="Speakers when generated. (Default: 30)")
    p.add_argument("--modalities", default="audio,video,audiovisual", help="Comma-separated subset.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs-audio", type=int, default=30)
    p.add_argument("--epochs-video", type=int, default=8, help="(from the audio model's back-end)")
    p.add_argument("--epochs-av", type=int, default=6, help="(from the audio and video models)")
    p.add_argument("--lr", type=float, default=2e-3, help="Audio model (from scratch). (Default: 2e-3)")
    p.add_argument("--lr-init", type=float, default=1e-3, help="Video and audio-visual models. (Default: 1e-3)")
    p.add_argument("--warmup-epochs", type=int, default=2)
    p.add_argument("--average-last", type=int, default=5)
    p.add_argument("--fusion", default="gated")
    p.add_argument("--adim", type=int, default=96)
    p.add_argument("--elayers", type=int, default=2)
    p.add_argument("--dlayers", type=int, default=1, help="Decoder blocks. (Default: 1)")
    p.add_argument("--paraformer-dlayers", type=int, default=0,
                   help="The Paraformer's decoder blocks, when not --dlayers (its own run folder). (Default: 0 = "
                        "--dlayers)")
    p.add_argument("--paraformer-sampling-ratio", type=float, default=None,
                   help="The Paraformer's --paraformer-sampling-ratio (glancing sampler share; 0 = none), when not "
                        "its default (its own run folder). (Default: the decoder's default)")
    p.add_argument("--paraformer-ar-dlayers", type=int, default=0,
                   help="The Paraformer's --paraformer-ar-dlayers: blocks of an auxiliary autoregressive decoder "
                        "trained beside it (its own run folder; the candidates are then also rescored with it, "
                        "--nar-scorer). (Default: 0 = none)")
    p.add_argument("--paraformer-ar-from-ar", action="store_true",
                   help="With --paraformer-encoder ar-frozen: the Paraformer's auxiliary AR decoder is the AR "
                        "model's own decoder, frozen (train.py --transfer-ar-scorer, --paraformer-ar-dlayers = "
                        "--dlayers, --paraformer-ar-weight 0): --nar-scorer ar scores its candidates as the AR model "
                        "does (its own run folder).")
    p.add_argument("--paraformer-detach-encoder", action="store_true",
                   help="The Paraformer's --paraformer-detach-encoder: its encoder learns from the CTC head and the "
                        "auxiliary decoder alone (its own run folder).")
    p.add_argument("--paraformer-live-predictor", action="store_true",
                   help="With --paraformer-detach-encoder: the Paraformer's --paraformer-live-predictor (the "
                        "quantity loss still trains the encoder; its own run folder).")
    p.add_argument("--paraformer-queries", default="cif", choices=["cif", "ctc"],
                   help="The Paraformer's decoder inputs: 'cif' (its CIF predictor) or 'ctc' (Paraformer-v2: the CTC "
                        "head's posteriors per token of its alignment; decoded at its best path, and with "
                        "--nar-candidates N at N paths with 0..N-1 nats off the blank, rescored). (Default: cif)")
    p.add_argument("--paraformer-encoder", default="own", choices=["own", "ar", "ar-frozen"],
                   help="own: the Paraformers are trained as the autoregressive models are; ar: each starts from "
                        "the encoder of the autoregressive model of its modality, which is compared with one "
                        "trained as long the same way; ar-frozen: each trains its decoder and CTC head on that "
                        "encoder, frozen (own run folders). (Default: own)")
    p.add_argument("--dry-run", action="store_true",
                   help="Print the train.py commands of the models not yet trained and stop (no corpus generated).")
    p.add_argument("--resnet-width", type=int, default=16)
    p.add_argument("--ctc-weight", type=float, default=0.3, help="Training CTC weight. (Default: 0.3)")
    p.add_argument("--max-frames", type=int, default=300)
    p.add_argument("--precision", default="auto", choices=["auto", "32", "bf16-mixed"],
                   help="train.py --precision of every model (auto: bf16 mixed where the CPU computes bf16 "
                        "natively; on some such CPUs float32 trains these small models faster). (Default: auto)")
    p.add_argument("--threads", type=int, default=0, help="Training and decoding threads (0 = all cores).")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--speed-rounds", type=int, default=3,
                   help="Rounds of the decoding-step timing: each times every row's pass in turn; the best round of "
                        "each row is kept. (Default: 3)")
    p.add_argument("--decode-ctc-weight", type=float, default=0.5, help="Beam search CTC weight. (Default: 0.5)")
    p.add_argument("--nar-candidates", type=int, default=5,
                   help="Also decode the Paraformer with this many candidates rescored by its CTC head (weight "
                        "--decode-ctc-weight; eval.py --nar-candidates); 1 = no such row. (Default: 5)")
    p.add_argument("--penalty", type=float, default=0.0,
                   help="eval.py --penalty of every decoding: length bonus per token of the beam search and of the "
                        "Paraformer's rescored candidates. (Default: 0)")
    p.add_argument("--nar-alternatives", type=int, default=0,
                   help="Also decode every rescored Paraformer row with this many token alternatives per candidate "
                        "(eval.py --nar-alternatives); 0 = no such rows. (Default: 0)")
    p.add_argument("--nar-ctc-candidate", action="store_true",
                   help="Also decode every rescored Paraformer row with the CTC head's best path among its "
                        "hypotheses (eval.py --nar-ctc-candidate).")
    p.add_argument("--nar-ar-top", type=int, default=0,
                   help="Also decode every row the auxiliary AR decoder scores with it scoring only the N best "
                        "hypotheses by the Paraformer's own score (eval.py --nar-ar-top); 0 = no such rows. "
                        "(Default: 0)")
    p.add_argument("--nar-ctc-fusion", type=float, default=0.0,
                   help="Also decode every Paraformer row at the CTC head's count (--nar-counts ctc, both) with its "
                        "tokens chosen with the CTC head's posteriors, this weight (eval.py --nar-ctc-fusion); 0 = "
                        "no such rows. (Default: 0)")
    p.add_argument("--nar-scorers", default=None,
                   help="Comma-separated eval.py --nar-scorer values the rescored Paraformer rows are decoded with "
                        "(ar and both need --paraformer-ar-dlayers). (Default: paraformer, and ar,both with "
                        "--paraformer-ar-dlayers)")
    p.add_argument("--nar-counts", default="cif,ctc,both",
                   help="Comma-separated eval.py --nar-count values the Paraformer is decoded with, each in one pass "
                        "and with --nar-candidates. (Default: cif,ctc,both)")
    p.add_argument("--batch-size", type=int, default=8, help="Utterances decoded together. (Default: 8)")
    p.add_argument("--split", default="test", choices=["test", "val"],
                   help="The held-out split decoded: test, or val (other unseen speakers: whether a ratio holds "
                        "beyond the test speakers). (Default: test)")
    p.add_argument("--snrs", default="clean,-5", help="Comma-separated; 'clean' = no noise. (Default: clean,-5)")
    p.add_argument("--device", default="cpu",
                   help="Where the models are decoded and timed (cpu, cuda, cuda:N); training runs on the CPU or "
                        "where train.py puts it. (Default: cpu)")
    args = p.parse_args()
    modalities = args.modalities.split(",")
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        p.error(f"--modalities: unknown {', '.join(unknown)} (known: {', '.join(MODALITIES)})")
    if args.paraformer_sampling_ratio is not None:  # the decoder's own bounds, before any training
        from espnet.nets.pytorch_backend.component_options import find
        from espnet.nets.pytorch_backend.decoder.paraformer_decoder import ParaformerDecoder

        try:
            find(ParaformerDecoder.options, "sampling_ratio").check(args.paraformer_sampling_ratio,
                                                                     "--paraformer-sampling-ratio")
        except ValueError as err:
            p.error(str(err))
    if args.paraformer_ar_from_ar:
        if args.paraformer_encoder != "ar-frozen":
            p.error("--paraformer-ar-from-ar: the AR model's decoder scores the output of its own encoder: it needs "
                    "--paraformer-encoder ar-frozen")
        if args.paraformer_ar_dlayers not in (0, args.dlayers):
            p.error(f"--paraformer-ar-from-ar takes the AR model's decoder (--dlayers {args.dlayers}): "
                    f"--paraformer-ar-dlayers {args.paraformer_ar_dlayers} differs")
        args.paraformer_ar_dlayers = args.dlayers
    from espnet.nets.pytorch_backend.decoder.base_decoder import NAR_COUNTS, NAR_SCORERS, nar_candidates_refusal

    nar_counts = args.nar_counts.split(",")
    if not nar_counts or any(c not in NAR_COUNTS for c in nar_counts):
        p.error(f"--nar-counts: a comma-separated subset of {', '.join(NAR_COUNTS)}, got {args.nar_counts!r}")
    scorers = args.nar_scorers.split(",") if args.nar_scorers else (
        list(NAR_SCORERS) if args.paraformer_ar_dlayers else ["paraformer"])
    if any(c not in NAR_SCORERS for c in scorers):
        p.error(f"--nar-scorers: a comma-separated subset of {', '.join(NAR_SCORERS)}, got {args.nar_scorers!r}")
    if not args.paraformer_ar_dlayers and scorers != ["paraformer"]:
        p.error(f"--nar-scorers {args.nar_scorers}: ar and both score with the auxiliary AR decoder: they need "
                f"--paraformer-ar-dlayers")
    # the values as eval.py checks them, for the rows they apply to: the AR-scored ones at the CTC head's count
    refusal = nar_candidates_refusal(1, nar_count="ctc", nar_scorer="ar", nar_ar_top=args.nar_ar_top,
                                     nar_ctc_fusion=args.nar_ctc_fusion)
    if refusal:
        p.error(refusal)
    if args.nar_ar_top and not args.paraformer_ar_dlayers:
        p.error(f"--nar-ar-top {args.nar_ar_top}: limits the hypotheses the auxiliary AR decoder scores: it needs "
                f"--paraformer-ar-dlayers")
    if args.nar_ctc_fusion and nar_counts == ["cif"]:
        p.error(f"--nar-ctc-fusion {args.nar_ctc_fusion:g}: fuses the tokens of the rows at the CTC head's count; "
                f"--nar-counts cif has none")
    if args.speed_rounds < 1:
        p.error(f"--speed-rounds {args.speed_rounds}: at least 1 (each round times every row once)")
    snrs = [None if s.strip() == "clean" else float(s) for s in args.snrs.split(",")]
    if None not in snrs:
        p.error("--snrs must include clean (the speed and the WER ratios are taken from the clean pass)")
    if args.device != "cpu" and not args.dry_run:
        import torch

        try:
            wanted = torch.device(args.device)
        except RuntimeError as err:
            p.error(f"--device {args.device}: {err}")
        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if wanted.type != "cuda" or (wanted.index or 0) >= found:
            p.error(f"--device {args.device}: not a CUDA device of this machine ({found} found; cpu decodes on "
                    f"the CPU)")

    data_dir = args.data or os.path.join(args.out, "data")
    if not args.dry_run and not os.path.isfile(os.path.join(data_dir, "labels", "test.csv")):
        from preparation.synthetic_av import generate

        generate(data_dir, num_utts=args.num_utts, num_speakers=args.num_speakers, seed=args.seed, progress=False)
    data = {"root": data_dir, "sp_model_path": os.path.join(data_dir, "spm", "synth_unigram.model"),
            "dict_path": os.path.join(data_dir, "spm", "synth_unigram_units.txt")}

    ckpts = train_all(args, data, modalities)
    if args.dry_run:
        return 0

    from datamodule.text_transform import TextTransform
    from espnet.asr.evaluate import evaluate
    from espnet.asr.pretrained import Recognizer
    from espnet.nets.pytorch_backend.decoder.base_decoder import DecodeOptions
    from espnet.training.cpu_threads import apply_num_threads

    apply_num_threads(args.threads)
    import torch

    tokenizer = TextTransform(data["sp_model_path"], data["dict_path"])
    again = ", AR trained as long, encoder from the first" if args.paraformer_encoder == "ar" else ""
    beam_label = f"beam search (beam {args.beam_size}, batched{again})"

    def options(**nar: Any) -> DecodeOptions:
        return DecodeOptions(beam_size=args.beam_size, ctc_weight=args.decode_ctc_weight, penalty=args.penalty, **nar)

    methods = [Method(beam_label, "transformer", options()),
               Method("CTC greedy (same model)", "transformer", options(mode="ctc-greedy"))]
    para = "Paraformer" + paraformer_variant(args)[1]
    if args.paraformer_queries == "ctc":  # the CTC head's best path (and blank-penalised ones), fused or not
        nar_counts = []
        for candidates in sorted({1, args.nar_candidates}):
            for scorer in scorers if candidates > 1 else ["paraformer"]:
                for ar_top in sorted({0, args.nar_ar_top}) if scorer != "paraformer" else [0]:
                    for fusion in sorted({0.0, args.nar_ctc_fusion}):
                        label = (f"{para}, one pass at the CTC head's best path" if candidates == 1 else
                                 f"{para}, {candidates} blank-penalised CTC paths rescored with CTC")
                        if scorer != "paraformer":
                            label += (", scored by the AR decoder" if scorer == "ar" else
                                      ", scored by the mean of the AR decoder's and its own")
                            if ar_top:
                                label += f" (its {ar_top} best)"
                        if fusion:
                            label += f" (tokens fused with the CTC head's, weight {fusion:g})"
                        methods.append(Method(label, "paraformer", options(
                            candidates=candidates, nar_count="ctc", nar_ctc_fusion=fusion, nar_scorer=scorer,
                            nar_ar_top=ar_top)))
    for count in nar_counts:
        for candidates in sorted({1, args.nar_candidates}):
            several = candidates > 1 or count == "both"  # the scorer picks among several hypotheses
            for scorer in scorers if several else ["paraformer"]:
                for alternatives in sorted({0, args.nar_alternatives}) if several else [0]:
                    for ctc_path in sorted({False, args.nar_ctc_candidate}) if several else [False]:
                        for ar_top in sorted({0, args.nar_ar_top}) if scorer != "paraformer" else [0]:
                            for fusion in sorted({0.0, args.nar_ctc_fusion}) if count != "cif" else [0.0]:
                                methods.append(Method(
                                    paraformer_label(para, count, candidates, scorer, alternatives, ctc_path, ar_top,
                                                     fusion),
                                    "paraformer", options(candidates=candidates, nar_count=count, nar_scorer=scorer,
                                                          nar_alternatives=alternatives, nar_ctc_candidate=ctc_path,
                                                          nar_ar_top=ar_top, nar_ctc_fusion=fusion)))
    rows, held_out = [], {}
    for modality in modalities:
        models, runs = {}, []
        for method in methods:
            label = method.label
            if method.decoder not in models:  # one model per decoder kind: the methods share it
                models[method.decoder] = Recognizer.from_pretrained(ckpts[method.decoder][modality],
                                                                    device=args.device).model.eval()
            model = models[method.decoder]
            row = {"modality": modality, "method": label, "wer": {}, "utt_per_s": None}
            for snr in snrs:
                if modality == "video" and snr is not None:
                    continue  # noise is added to audio only
                res = evaluate(model, tokenizer, data["root"], f"{args.split}.csv", method.options, snr_target=snr,
                               seed=args.seed, progress=False, batch_size=args.batch_size, device=args.device)
                key = "clean" if snr is None else f"{snr:g} dB"
                row["wer"][key] = res.wer
                if snr is None:
                    row["utt_per_s"] = res.num_utterances / res.seconds
                print(f"[{modality}] {label}, {key}: WER {100 * res.wer:.1f} %, {res.num_utterances} utterances "
                      f"in {res.seconds:.1f} s", flush=True)
            runs.append((method.decoder, method.options, row))
            rows.append(row)
        encoded = {name: encoded_batches(model, held_out_split(data["root"], args.split, model, held_out),
                                         args.batch_size, args.device) for name, model in models.items()}
        speeds = step_speeds([(models[name], encoded[name], options) for name, options, _ in runs],
                             args.speed_rounds, args.device)
        for (_, _, row), speed in zip(runs, speeds):
            row["decoding_alone_utt_per_s"] = speed
            print(f"[{modality}] {row['method']}: decoding step alone {speed:.1f} utt/s (best of "
                  f"{args.speed_rounds} rounds)", flush=True)
    keys = ["clean" if s is None else f"{s:g} dB" for s in snrs]
    beam = {r["modality"]: r for r in rows if r["method"].startswith("beam")}
    lines = ["| modality | decoding | " + " | ".join(f"WER {k}" for k in keys) +
             " | × beam WER | utt/s | × beam | decoding step alone, utt/s | × beam |",
             "| --- | --- |" + " --- |" * (len(keys) + 5)]
    for r in rows:
        b = beam[r["modality"]]
        wers = " | ".join(f"{100 * r['wer'][k]:.1f}" if k in r["wer"] else "—" for k in keys)
        lines.append(f"| {r['modality']} | {r['method']} | {wers} | {r['wer']['clean'] / b['wer']['clean']:.2f} | "
                     f"{r['utt_per_s']:.1f} | {r['utt_per_s'] / b['utt_per_s']:.1f} | "
                     f"{r['decoding_alone_utt_per_s']:.1f} | "
                     f"{r['decoding_alone_utt_per_s'] / b['decoding_alone_utt_per_s']:.1f} |")
    table = "\n".join(lines)
    threads = torch.get_num_threads()
    where = (f"decoded on {torch.cuda.get_device_name(args.device)} (torch {torch.__version__}), "
             if args.device != "cpu" else "")
    split = {"test": "Test", "val": "Validation"}[args.split]
    note = (f"{where}{split} WER (%) on unseen speakers and decoding speed: utt/s of the clean pass with media loading and "
            f"the encoder included (as eval.py), and of the decoding step alone on the same batches' encoder "
            f"outputs (the rows side by side, best of {args.speed_rounds} rounds); batches of {args.batch_size}, "
            f"{threads} threads, load average {os.getloadavg()[0]:.1f}" +
            (f"; length bonus {args.penalty:g} per token (--penalty)." if args.penalty else "."))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.md"), "w") as handle:
        handle.write(note + "\n\n" + table + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump({"rows": rows, "args": vars(args), "threads": threads, "load_average": os.getloadavg()}, handle,
                  indent=2)
    print(note + "\n\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
