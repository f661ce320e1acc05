#!/usr/bin/env bash
# Quickstart: set up the environment, generate a small audio-visual corpus (eSpeak NG speech
# + rendered lips), train a small audio-only model and then a small video-only model that starts
# from its back-end on CPU, decode the test split (speakers unseen in training), print both WERs.
# Usage: bash tutorials/quickstart.sh [OUT_DIR]   (default: ./exp/quickstart)
# Precision as train.py chooses it (--precision auto): bf16 mixed where the processor computes
# bf16 natively (measured faster per step for both models, same WER: docs/benchmarks.md#quickstart),
# float32 elsewhere.
set -euo pipefail
START=$(date +%s)
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$REPO_ROOT"
OUT="${1:-exp/quickstart}"
DATA="$OUT/data"
if [ ! -f "$DATA/labels/test.csv" ]; then
  "$PY" -m preparation.synthetic_av --out "$DATA" --num-utts 1500 --num-speakers 40 --seed 0
fi
# more utterances and speakers (test speakers are unseen), fewer epochs: the time goes to data the
# models have not seen yet (docs/benchmarks.md#quickstart)
declare -A EPOCHS=([audio]="${QUICKSTART_AUDIO_EPOCHS:-24}" [video]="${QUICKSTART_VIDEO_EPOCHS:-3}")
# training precision (train.py --precision): float32; at these small sizes bf16 mixed was 1.7-1.8x
# slower on a 2-core Intel Xeon with AMX and 1.1-1.35x faster on a 2-core AMD EPYC
# (docs/benchmarks.md#quickstart); QUICKSTART_PRECISION=auto picks bf16 where the CPU has it natively
PRECISION="${QUICKSTART_PRECISION:-32}"
declare -A AVERAGE=([audio]=5 [video]=2)  # epoch checkpoints averaged into model_avg_*.pth
# audio: log-mel features + two stride-2 convolutions, about 1/7 of the 1-D ResNet's multiply-adds
# on the raw waveform; its 128-d output matches the video ResNet's (width 16), so the projection
# after the frontend transfers to the video model with the rest of the back-end; video: the
# 88x88 mouth crops average-pooled to 44x44 before the ResNet (a quarter of its multiply-adds)
declare -A ENCODER=([audio]="--audio-encoder logmel --logmel-channels 64 --logmel-dim 128" [video]="--vision-encoder resnet --resnet-width 16 --resnet-downsample 2")
# the video model starts from the audio model's back-end (projection, Conformer, decoder, CTC):
# trained from scratch on a corpus this small it does not get past the sentence grammar
# audio: batches of up to 600 frames (24 s) with a higher learning rate: the small model's step costs
# little more for twice the frames; trained on clean speech (no babble augmentation: the test is
# clean, and the small model learns it in fewer epochs); video: 300 frames
declare -A RECIPE=([audio]="--warmup-epochs 1 --lr 3e-3 --max-frames 600 --train-snrs clean"
                   [video]="--warmup-epochs 1 --lr 1e-3 --max-frames 300 --transfer-backend")
DIMS=(--adim 96 --aheads 4 --eunits 384 --elayers 2 --dunits 384 --dlayers 1)
for modality in audio video; do
  mkdir -p "$OUT/$modality"
  FROM=()
  if [ "$modality" = video ]; then
    FROM=(--pretrained-model-path "$(ls "$OUT/audio"/model_avg_*.pth | head -n 1)")
  fi
  echo "training the $modality-only model (${EPOCHS[$modality]} epochs; log: $OUT/$modality/train.log)"
  # shellcheck disable=SC2086
  if ! "$PY" train.py --exp-dir "$OUT" --exp-name "$modality" ${ENCODER[$modality]} \
    --root-dir "$DATA" --train-file train.csv --val-file val.csv \
    --sp-model-path "$DATA/spm/synth_unigram.model" --dict-path "$DATA/spm/synth_unigram_units.txt" \
    "${DIMS[@]}" --max-epochs "${EPOCHS[$modality]}" ${RECIPE[$modality]} "${FROM[@]}" --ctc-weight 0.3 \
    --average-last "$(( EPOCHS[$modality] < AVERAGE[$modality] ? EPOCHS[$modality] : AVERAGE[$modality] ))" --num-workers 0 --num-threads 0 --precision "$PRECISION" \
    > "$OUT/$modality/train.log" 2>&1; then
    tail -n 5 "$OUT/$modality/train.log"
    echo "training the $modality-only model failed; see $OUT/$modality/train.log" >&2
    exit 1
  fi
done
for modality in audio video; do
  avg=$(ls "$OUT/$modality"/model_avg_*.pth | head -n 1)
  "$PY" eval.py --root-dir "$DATA" --test-file test.csv --pretrained-model-path "$avg" --num-workers 0 \
    --beam-size 5 --ctc-weight 0.5 --output-json "$OUT/$modality/test_results.json" | tee "$OUT/$modality/eval.log"
done
echo
echo "== quickstart results (test speakers unseen in training; $(( ($(date +%s) - START) / 60 )) min $(( ($(date +%s) - START) % 60 )) s in all) =="
for modality in audio video; do
  echo "$modality: $(tail -n 1 "$OUT/$modality/eval.log")   checkpoints: $OUT/$modality   results: $OUT/$modality/test_results.json"
done
