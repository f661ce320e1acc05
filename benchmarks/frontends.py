"""CPU speed of the pretrained frontends, with randomly initialised full-size models
(built offline from configs: nothing is downloaded).

1. Whisper encoder frontend, whisper-base sized encoder (d_model 512, 6 layers, 8 heads),
   on a batch of 4 clips of up to 3 s (3.0, 2.6, 2.2, 1.8 s): run on the batch's real
   length (default) vs padded to 30 s (``pad_seconds=30``, what the original Whisper
   does). Prints both times and the speed ratio (target >= 5x).
2. ViT frontend, vit-base sized (224 px, patch 16, 768, 12 layers): frames per second.

The models are saved with ``save_pretrained`` to a temporary directory and loaded back
through the frontends (HF_HUB_OFFLINE=1). Whisper's decoder is built with one layer only
to keep the saved checkpoint small; the frontend drops it anyway.

    python benchmarks/frontends.py [--threads 1] [--repeats 3] [--vit-frames 16]
"""

import argparse
import os
import sys
import tempfile

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ["HF_HUB_OFFLINE"] = "1"

from espnet.utils.timing import median_seconds  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    p.add_argument("--padded-repeats", type=int, default=1, help="timed runs of the slow 30 s case")
    p.add_argument("--vit-frames", type=int, default=16, help="frames per ViT call (2 clips)")
    args = p.parse_args()

    import transformers

    from espnet.nets.pytorch_backend.frontend.audio.whisper import WhisperFrontend
    from espnet.nets.pytorch_backend.frontend.vision.vit import ViTFrontend

    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, CPU threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        # ---- Whisper ----------------------------------------------------------------
        cfg = transformers.WhisperConfig(
            d_model=512, encoder_layers=6, encoder_attention_heads=8, encoder_ffn_dim=2048, num_mel_bins=80,
            max_source_positions=1500, decoder_layers=1, decoder_attention_heads=8, decoder_ffn_dim=2048,
        )
        transformers.WhisperModel(cfg).save_pretrained(os.path.join(tmp, "whisper"))
        var = WhisperFrontend(os.path.join(tmp, "whisper")).eval()
        pad = WhisperFrontend(os.path.join(tmp, "whisper"), pad_seconds=30).eval()
        pad.load_state_dict(var.state_dict())
        lengths = torch.tensor([48000, 41600, 35200, 28800])  # 3.0, 2.6, 2.2, 1.8 s
        audio = torch.randn(4, 48000, 1)
        with torch.inference_mode():
            t_var = median_seconds(lambda: var(audio, lengths), args.repeats)
            t_pad = median_seconds(lambda: pad(audio, lengths), args.padded_repeats)
            f_var, l_var = var(audio, lengths)
            f_pad, _ = pad(audio, lengths)
        print("\nWhisper encoder frontend (whisper-base size, random weights), batch 4 x <= 3 s:")
        print(f"  variable length : {t_var * 1000:8.1f} ms/batch  output {tuple(f_var.shape)}, lengths {l_var.tolist()}")
        print(f"  padded to 30 s  : {t_pad * 1000:8.1f} ms/batch  output {tuple(f_pad.shape)}")
        ratio = t_pad / t_var
        print(f"  speed-up        : {ratio:.1f}x  ({'meets' if ratio >= 5 else 'BELOW'} the 5x target)")
        del var, pad

        # ---- ViT --------------------------------------------------------------------
        vcfg = transformers.ViTConfig(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12,
                                      num_attention_heads=12, intermediate_size=3072)
        transformers.ViTModel(vcfg, add_pooling_layer=False).save_pretrained(os.path.join(tmp, "vit"))
        vit = ViTFrontend(os.path.join(tmp, "vit")).eval()
        per_clip = args.vit_frames // 2
        video = torch.randn(2, per_clip, 1, 88, 88)
        vlen = torch.tensor([per_clip, per_clip])
        with torch.inference_mode():
            t_vit = median_seconds(lambda: vit(video, vlen), args.repeats)
        frames = int(vlen.sum())
        print("\nViT frontend (vit-base size, 224 px, random weights):")
        print(f"  {frames} frames in {t_vit * 1000:.1f} ms -> {frames / t_vit:.1f} frames/s "
              f"({frames / t_vit / 25:.2f}x real time at 25 fps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
