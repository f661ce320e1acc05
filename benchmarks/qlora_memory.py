"""QLoRA memory benchmark: a ~100 M-parameter LLaMA-architecture model (built from a config,
random weights, offline) in bf16 vs after ``QLoRAManager.apply_qlora`` (4-bit NF4 with
double quantisation + LoRA r=16 on q/k/v/o), side by side in one run.

    python benchmarks/qlora_memory.py                 # ~100 M params, vocab 8192
    python benchmarks/qlora_memory.py --vocab 32000   # LLaMA-2 vocabulary (embeddings stay 16-bit)

Prints: weight memory bf16 vs 4-bit (target <= 0.35x), trainable fraction (target <= 2 %),
and the peak RSS of one training step (forward, backward, AdamW) of full fine-tuning vs
QLoRA, each measured in a fresh child process. The peak of the step is measured from the
resident set after the model is built (the kernel's high-water mark is reset first via
/proc/self/clear_refs), so the one-off cost of loading full-precision weights before
quantising them is reported separately ("build peak"). Both children run with
``MALLOC_MMAP_THRESHOLD_=65536`` so that freed large blocks leave the resident set.
"""

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from typing import Dict

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from espnet.nets.pytorch_backend.lora.qlora_manager import QLoRAManager, module_bytes  # noqa: E402
from espnet.nets.pytorch_backend.lora.quantize import logical_numel  # noqa: E402


class LLMComponent(torch.nn.Module):
    """Stands in for ``--decoder llama``: exposes the network to the QLoRA manager."""

    def __init__(self, llm: torch.nn.Module) -> None:
        super().__init__()
        self.llm = llm

    def pretrained_model(self) -> torch.nn.Module:
        return self.llm


def build_llm(args, dtype: torch.dtype) -> torch.nn.Module:
    import transformers

    cfg = transformers.LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.heads,
        max_position_embeddings=2048, tie_word_embeddings=args.tied,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).to(dtype)


def rss_mb(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not in /proc/self/status")


def release_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: freed memory may stay resident, the numbers are then upper bounds
        pass


def child(args) -> Dict[str, float]:
    """One training step in this process; returns memory facts (MB)."""
    torch.set_num_threads(args.threads)
    base = rss_mb("VmRSS")
    qlora = args.child == "qlora"
    model = LLMComponent(build_llm(args, torch.float32))
    if qlora:
        QLoRAManager(argparse.Namespace(qlora_r=args.r, qlora_alpha=2 * args.r, qlora_dropout=0.05,
                                        qlora_target_modules=None, qlora_compute_dtype="float32")).apply_qlora(model)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    release_memory()
    build_peak = rss_mb("VmHWM")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset the peak-RSS high-water mark to the current RSS
    before = rss_mb("VmRSS")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=g)
    start = time.perf_counter()
    loss = model.llm(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    return {"baseline": base, "build_peak": build_peak, "after_build": before, "step_peak": rss_mb("VmHWM"),
            "step_seconds": seconds, "loss": float(loss.detach())}


def run_child(kind: str, args) -> Dict[str, float]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind]
    for key in ("layers", "hidden", "intermediate", "heads", "vocab", "seq", "batch", "threads", "r"):
        cmd += [f"--{key}", str(getattr(args, key))]
    if not args.tied:
        cmd.append("--untied")
    # Large blocks are mmap-ed (and so returned to the OS when freed) in both children:
    # with glibc's default heap, freed temporaries of the 4-bit kernels stay resident and
    # the peak measures fragmentation instead of what the step needs.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=13)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--intermediate", type=int, default=2048)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--untied", dest="tied", action="store_false", help="Separate lm_head (default: tied).")
    p.add_argument("--r", type=int, default=16, help="LoRA rank (alpha = 2r, the manager's default ratio).")
    p.add_argument("--seq", type=int, default=256, help="Tokens per sequence in the training step.")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", choices=["full", "qlora"], default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = LLMComponent(build_llm(args, torch.bfloat16))
    total = sum(p.numel() for p in model.parameters())
    bf16_bytes = module_bytes(model)  # measured before quantising the same model in place
    QLoRAManager(argparse.Namespace(qlora_r=args.r, qlora_alpha=2 * args.r, qlora_dropout=0.05,
                                    qlora_target_modules=None, qlora_compute_dtype="bfloat16")).apply_qlora(model)
    q_bytes = module_bytes(model)
    q_total = sum(logical_numel(p) for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    linear_bytes = sum(module_bytes(m) for m in model.modules() if type(m).__name__ == "Linear4bit")
    embed_bytes = module_bytes(model.llm.get_input_embeddings())
    del model
    release_memory()

    full = run_child("full", args)
    qlora = run_child("qlora", args)
    mb = 2 ** 20
    print(f"LLaMA architecture: {args.layers} layers, hidden {args.hidden}, MLP {args.intermediate}, "
          f"{args.heads} heads, vocab {args.vocab} ({'tied' if args.tied else 'untied'} embeddings): "
          f"{total / 1e6:.1f} M parameters; LoRA r={args.r} on q/k/v/o; step: batch {args.batch} x {args.seq} tokens, "
          f"{args.threads} threads, fp32 compute")
    print()
    print("| measure | bf16 / full fine-tuning | 4-bit NF4 + LoRA | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| weight memory (MB) | {bf16_bytes / mb:.1f} | {q_bytes / mb:.1f} | {q_bytes / bf16_bytes:.3f}x | <= 0.35x |")
    print(f"| trainable parameters | {total:,} (100 %) | {trainable:,} ({100.0 * trainable / q_total:.2f} %) | "
          f"{trainable / total:.4f} | <= 2 % |")
    step_full = full["step_peak"] - full["baseline"]
    step_q = qlora["step_peak"] - qlora["baseline"]
    print(f"| peak RSS of one training step, above the process after imports (MB) | {step_full:.0f} | {step_q:.0f} | "
          f"{step_q / step_full:.3f}x | - |")
    print(f"| build peak RSS, above the process after imports (MB) | {full['build_peak'] - full['baseline']:.0f} | "
          f"{qlora['build_peak'] - qlora['baseline']:.0f} | - | - |")
    print(f"| step time (s) | {full['step_seconds']:.2f} | {qlora['step_seconds']:.2f} | "
          f"{qlora['step_seconds'] / full['step_seconds']:.2f}x | - |")
    print()
    print(f"4-bit linear layers: {linear_bytes / mb:.1f} MB (incl. block scales); 16-bit embeddings: "
          f"{embed_bytes / mb:.1f} MB (input embeddings and the output head are not quantised, as in QLoRA); "
          f"full fine-tuning is fp32 weights + fp32 AdamW; QLoRA builds in fp32 before quantising (build peak).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
