#!/bin/bash
# The accuracy runs of docs/benchmarks.md as they are meant to run: on one GPU, the encoder
# trained for up to 200 epochs (patience 30, the best evaluated epoch kept: patience 3 on the
# noisy calibration curve cut the CPU runs short; no time budget), the three ML-1M / Beauty
# runs and the ablation in parallel. Usage: bash benchmarks/gpu-accuracy.sh  (from the repository root).
set -u
L="lsi bench accuracy --device cuda"
mkdir -p var/bench-logs
$L --dataset ml-1m --protocol loo --models fused,short_only,long_only --seeds 3 --jobs 3 \
   --max-len 200 --windows all --dropout 0.2 --patience 30 --merge > var/bench-logs/ml-1m-loo.log 2>&1 &
$L --dataset amazon-beauty --protocol loo --models fused,short_only,long_only --seeds 3 --jobs 3 \
   --max-len 50 --dropout 0.5 --negatives 2048 --patience 30 --merge > var/bench-logs/amazon-beauty-loo.log 2>&1 &
$L --dataset ml-1m --protocol prequential --seeds 1 --max-len 200 --refresh-every 100000 \
   --models mostpop,covisit,streaming,fused,short_only,long_only > var/bench-logs/ml-1m-prequential.log 2>&1 &
$L --dataset ml-1m --protocol loo --phase valid --seeds 1 --max-len 200 --out benchmarks/results/current/ablation \
   --models fused,short_only,long_only,fixed_weight,fused_gru,short_only_gru,fused_contrastive \
   > var/bench-logs/ml-1m-ablation.log 2>&1 &
wait
tail -n 3 var/bench-logs/*.log
