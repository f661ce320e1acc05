"""One model's training step on random data, step by step on command: the worker process of
``benchmarks/train_speed.py --full-size`` (run by it, one process per model, so that the
original Auto-AVSR code, whose packages have this project's names, runs beside this one and
both take turns on the same cores).

    python benchmarks/step_worker.py SPEC_JSON

``SPEC_JSON`` (one JSON object):

* ``impl``: ``ours`` (this project as ``train.py`` builds it: channels-last video stem and
  trunk in training, fused AdamW), ``standin`` (this project's code with those levers off: the
  original's computation, for when no original checkout is given) or ``original`` (the
  original Auto-AVSR ``E2E`` imported from ``checkout``; full size only);
* ``modality`` (``video``, ``audio``, ``audiovisual``; the original has no audio-visual model),
  ``sizes`` (``odim adim aheads eunits elayers dunits dlayers width``), ``batch``, ``seconds``
  (every utterance that long: 25 frames or 16,000 samples per second), ``tokens`` (label
  length), ``compile`` (``torch.compile`` this project's model: ``true`` or a backend name,
  ``inductor`` by default), ``count_flops``, ``device`` (``cpu`` by default, or ``cuda``: the
  model, its optimiser state and the batch live there).

Protocol, one JSON line each way: on start it prints ``{"ready": ..., "params": N,
"build_seconds": s, "flops": F}`` (``flops``: multiply-adds x 2 of one forward + backward,
counted by ``torch.utils.flop_counter`` in float32 with the step-by-step attention;
``null`` unless ``count_flops``); then for each line ``32`` or ``bf16-mixed`` read from stdin
it runs one step (forward, backward, gradient clipping at 10, AdamW) at that precision and
prints ``{"seconds": wall, "cpu_seconds": cpu, "loss": value, "peak_bytes": P}``; ``quit``
ends it. On a GPU the wall time is taken between two ``torch.cuda.synchronize()`` (the step's
kernels have finished), and ``peak_bytes`` is ``torch.cuda.max_memory_allocated()`` during that
step (the statistics are reset before it; weights, gradients and optimiser state included);
on the CPU it is ``null``.
"""

import contextlib
import json
import math
import os
import sys
import time

import torch

SAMPLES_PER_FRAME = 640  # 16 kHz audio at 25 frames per second


def random_batch(spec):
    """Inputs of ``batch`` utterances of ``seconds`` each and their labels, the same for every
    worker (seed 0, drawn on the CPU), on the spec's ``device``."""
    generator = torch.Generator().manual_seed(0)
    b, frames = spec["batch"], int(round(25 * spec["seconds"]))
    batch = {"frames": frames}
    if spec["modality"] in ("video", "audiovisual"):
        batch["video"] = torch.randn(b, frames, 1, 88, 88, generator=generator)
        batch["video_lengths"] = torch.full((b,), frames)
    if spec["modality"] in ("audio", "audiovisual"):
        batch["audio"] = torch.randn(b, frames * SAMPLES_PER_FRAME, 1, generator=generator)
        batch["audio_lengths"] = torch.full((b,), frames * SAMPLES_PER_FRAME)
    odim = spec["sizes"]["odim"]
    batch["labels"] = torch.randint(1, odim - 1, (b, spec["tokens"]), generator=generator)
    device = torch.device(spec.get("device", "cpu"))
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def build_ours(spec, levers: bool):
    """This project's model, loss and optimiser; with ``levers`` off, its attention, video
    layout and optimiser compute as the original did."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
    from espnet.nets.pytorch_backend.model_config import ModelConfig
    from espnet.nets.pytorch_backend.transformer.attention import set_sdpa
    from espnet.training.scheduler import build_adamw

    s = spec["sizes"]
    streams = {"video": ("resnet", None), "audio": (None, "resnet1d"),
               "audiovisual": ("resnet", "resnet1d")}[spec["modality"]]
    width = {"width": s["width"]}
    config = ModelConfig(
        odim=s["odim"], vision_encoder=streams[0], audio_encoder=streams[1],
        vision_encoder_conf=width if streams[0] else {}, audio_encoder_conf=width if streams[1] else {},
        encoder_conf={"linear_units": s["eunits"], "num_blocks": s["elayers"]},
        decoder_conf={"dunits": s["dunits"], "dlayers": s["dlayers"]},
        adim=s["adim"], aheads=s["aheads"], ctc_weight=0.1)
    torch.manual_seed(0)
    model = E2E(config).train().to(spec.get("device", "cpu"))
    if not levers:
        set_sdpa(model, False)  # the default already; said for the stand-in
    for module in model.modules():
        if hasattr(module, "channels_last_training"):
            module.channels_last_training = levers
    optimizer = build_adamw(model.parameters(), 1e-3, 0.03, fused=levers)  # fused on the model's device

    def loss(batch):
        inputs = {k: batch[k] for k in ("video", "video_lengths", "audio", "audio_lengths") if k in batch}
        return model(inputs, batch["labels"])[0]

    return model, optimizer, loss


def build_original(spec):
    """The original Auto-AVSR ``E2E`` (its full, fixed sizes) from the checkout, with the
    optimiser of its ``lightning.py`` (AdamW, betas 0.9/0.98, PyTorch's default update)."""
    if spec["modality"] not in ("video", "audio"):
        raise SystemExit(f"the original Auto-AVSR has no {spec['modality']} model")
    # the checkout's packages, not this project's (theirs have no __init__.py: a regular package
    # of the same name anywhere on the path would win over them)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path[:] = [os.path.abspath(spec["checkout"])] + [p for p in sys.path if os.path.abspath(p or ".") != repo]
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E  # the checkout's

    torch.manual_seed(0)
    model = E2E(spec["sizes"]["odim"], spec["modality"], ctc_weight=0.1).train().to(spec.get("device", "cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.03, betas=(0.9, 0.98))

    def loss(batch):
        x, lengths = batch[spec["modality"]], batch[spec["modality"] + "_lengths"]
        return model(x, lengths, batch["labels"])[0]

    return model, optimizer, loss


def count_flops(model, loss, batch) -> float:
    """Floating-point operations of one float32 forward + backward (attention step by step,
    as ``torch.utils.flop_counter`` counts its matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    from espnet.nets.pytorch_backend.transformer.attention import set_sdpa

    saved = {m: m.use_sdpa for m in model.modules() if hasattr(m, "use_sdpa")}
    set_sdpa(model, False)
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            loss(batch).backward()
    finally:
        for m, flag in saved.items():
            m.use_sdpa = flag
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def timed_step(model, optimizer, loss, batch, precision: str, device: torch.device) -> dict:
    """One training step (forward, backward, clipping at 10, AdamW) at ``precision``: its wall
    and process CPU seconds, loss and peak GPU memory (``None`` on the CPU)."""
    cuda = device.type == "cuda"
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16-mixed"
                else contextlib.nullcontext())
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    wall, cpu = time.perf_counter(), time.process_time()
    with autocast:
        value = loss(batch)
    value.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"seconds": wall, "cpu_seconds": cpu, "loss": float(value.detach()),
            "peak_bytes": torch.cuda.max_memory_allocated(device) if cuda else None}


def main() -> int:
    spec = json.loads(sys.argv[1])
    device = torch.device(spec.get("device", "cpu"))
    start = time.perf_counter()
    if spec["impl"] == "original":
        model, optimizer, loss = build_original(spec)
    elif spec["impl"] in ("ours", "standin"):
        model, optimizer, loss = build_ours(spec, levers=spec["impl"] == "ours")
    else:
        raise SystemExit(f"unknown impl {spec['impl']!r}")
    batch = random_batch(spec)
    flops = count_flops(model, loss, batch) if spec.get("count_flops") else None
    if spec.get("compile"):  # after counting: the float32 count would compile a graph of its own
        if spec["impl"] == "original":
            raise SystemExit("compile: only this project's model")
        model.compile(backend=spec["compile"] if isinstance(spec["compile"], str) else "inductor", dynamic=False)
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"ready": spec["impl"], "params": params, "build_seconds": time.perf_counter() - start,
                      "flops": flops, "threads": torch.get_num_threads(),
                      "device": str(device)}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command not in ("32", "bf16-mixed"):
            raise SystemExit(f"unknown command {command!r}")
        reply = timed_step(model, optimizer, loss, batch, command, device)
        if not math.isfinite(reply["loss"]):
            raise SystemExit(f"{spec['impl']}: non-finite loss {reply['loss']}")
        print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
