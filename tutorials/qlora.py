"""Tutorial: QLoRA — a pretrained ViT frontend and a LLaMA decoder in 4-bit NF4 with LoRA
adapters, trained, evaluated from an adapter-only checkpoint, and merged back to full precision.

    python tutorials/qlora.py --out exp/tutorial_qlora
    python tutorials/qlora.py --out exp/q --vision-model-name /models/vit-base --decoder-model-name /models/llama

Steps:

1. Pretrained models. Nothing is downloaded here: without ``--vision-model-name`` /
   ``--decoder-model-name`` the script builds a tiny random ViT and a tiny LLaMA (with a BPE
   tokenizer trained on the corpus transcripts) from configs and ``save_pretrained``-s them to
   ``OUT/models`` — stand-ins for real model directories (e.g. one written by
   ``huggingface-cli download ... --local-dir``).
2. A small generated corpus (``preparation.synthetic_av``, 40 utterances) in ``OUT/data``.
3. ``train.py --vision-encoder vit --decoder llama --use-qlora --merge-lora`` (the command is
   printed): the QLoRA manager quantises every linear layer of both pretrained networks to
   4-bit NF4 and adds LoRA adapters to their attention projections; the parameter table at the
   start shows what is trainable. Checkpoints hold the adapters and the new modules only.
4. ``eval.py`` on the adapter checkpoint (it rebuilds the base models from the recorded
   ``--*-model-name``, re-quantises them and loads the adapters) and on the merged
   full-precision export; both print the same WER. Checkpoint sizes are compared at the end.

Both run with ``--precision 32``: under bf16 (``auto``'s choice on a CPU or GPU with native
bf16) the 4-bit weights plus adapters and their merged sum round differently, and a hypothesis
can change where two are close.
"""

import argparse
import glob
import json
import os
import sys
from typing import List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
from espnet.training.tiny_models import TINY_ENCODER, make_corpus  # noqa: E402


def save_tiny_models(out_dir: str, texts: List[str]) -> dict:
    """A tiny ViT and a tiny LLaMA + tokenizer, saved as Hugging Face model directories."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    vit_dir, llama_dir = os.path.join(out_dir, "vit"), os.path.join(out_dir, "llama")
    torch.manual_seed(0)
    if not os.path.isfile(os.path.join(vit_dir, "config.json")):
        cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64)
        transformers.ViTModel(cfg, add_pooling_layer=False).save_pretrained(vit_dir)
    if not os.path.isfile(os.path.join(llama_dir, "config.json")):
        bpe = Tokenizer(models.BPE(unk_token="<unk>"))
        bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
        bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<s>", "</s>",
                                                                                           "<pad>"]))
        tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>",
                                                   eos_token="</s>", pad_token="<pad>")
        # A larger init spread than the usual 0.02: the output head stays frozen under QLoRA,
        # and a random one with tiny weights cannot produce confident predictions.
        cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                       num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                       pad_token_id=tok.pad_token_id, initializer_range=0.3)
        transformers.LlamaForCausalLM(cfg).save_pretrained(llama_dir)
        tok.save_pretrained(llama_dir)
    return {"vit": vit_dir, "llama": llama_dir}


def transcripts(csv_path: str) -> List[str]:
    from datamodule.label_list import read_label_list

    return [u.transcript for u in read_label_list(csv_path) if u.transcript]


def run(module, argv: List[str], what: str) -> None:
    print(f"$ python {what} " + " ".join(argv), flush=True)
    if module.main(argv) != 0:
        raise SystemExit(f"{what} failed (see above)")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="Output folder.")
    p.add_argument("--vision-model-name", default=None, help="A ViT directory (default: a tiny one made here).")
    p.add_argument("--decoder-model-name", default=None, help="A LLaMA directory (default: a tiny one made here).")
    p.add_argument("--epochs", type=int, default=2, help="Training epochs. (Default: 2)")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from espnet.asr import eval_cli
    from espnet.training import train_cli

    corpus = make_corpus(os.path.join(args.out, "data"))
    tiny = save_tiny_models(os.path.join(args.out, "models"), transcripts(corpus["train"]))
    vit = args.vision_model_name or tiny["vit"]
    llama = args.decoder_model_name or tiny["llama"]
    exp = os.path.join(args.out, "exp")
    run(train_cli, ["--exp-dir", exp, "--exp-name", "vit_llama_qlora", "--vision-encoder", "vit",
                    "--vision-model-name", vit, "--decoder", "llama", "--decoder-model-name", llama, "--use-qlora",
                    "--merge-lora", "--root-dir", corpus["root"], "--train-file", "train.csv", "--val-file", "val.csv",
                    "--sp-model-path", corpus["sp_model_path"], "--dict-path", corpus["dict_path"], *TINY_ENCODER,
                    "--max-epochs", str(args.epochs), "--warmup-epochs", "1", "--lr", "5e-3",
                    "--max-frames", "400", "--num-workers", "0", "--precision", "32"], "train.py")
    run_dir = os.path.join(exp, "vit_llama_qlora")
    adapters = sorted(p for p in glob.glob(os.path.join(run_dir, "model_avg_*.pth")) if "_merged" not in p)[0]
    merged = adapters[:-4] + "_merged.pth"
    results = {}
    for name, path in (("adapters", adapters), ("merged", merged)):
        out_json = os.path.join(args.out, f"eval_{name}.json")
        run(eval_cli, ["--root-dir", corpus["root"], "--test-file", "test.csv", "--pretrained-model-path", path,
                       "--beam-size", "1", "--max-new-tokens", "12", "--num-workers", "0", "--output-json", out_json,
                       "--precision", "32"],
            "eval.py")
        with open(out_json) as handle:
            results[name] = {"checkpoint": path, "bytes": os.path.getsize(path), "wer": json.load(handle)["wer"]}
    print()
    for name, r in results.items():
        print(f"{name:>8}: {r['checkpoint']}  {r['bytes'] / 1024:.0f} KiB  WER {r['wer']:.3f}")
    with open(os.path.join(args.out, "qlora.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
