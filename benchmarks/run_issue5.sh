#!/usr/bin/env bash
# Issue 5's benchmarks, in order (about 2.5 hours on 2 CPU cores); then `python benchmarks/render_results.py`.
# Backbone vs text-only: same encoder (offline MiniLM), same 4-epoch budget (text-only: 4 epochs;
# backbone: 1 frozen S1 epoch + 3 S2 epochs), lr_encoder 2e-4 (chosen on Twitter-2015 dev for the tagger).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
for ds in twitter2015 twitter2017; do
  $py benchmarks/stage2.py --config configs/$ds.yaml --variant text --set train.epochs=4 --set train.lr_encoder=2e-4 --label main
  $py benchmarks/backbone.py --config configs/$ds.yaml --label main
done
# MSEA: the fused pooling is chosen on dev, then every reported configuration is scored once on test
$py benchmarks/retrieval_quality.py --split dev --embedders text fused --pooling mean entity
$py benchmarks/retrieval_quality.py --embedders random text fused --pooling mean entity
# Loss-weight grid of the backbone through its Prefect flow, on the smaller Twitter-2017 (4 points)
$py benchmarks/backbone_grid.py --config configs/twitter2017.yaml --align 0 --align 0.1 --infonce 0 --infonce 0.1
# Tagger variants on [T;Z] Twitter-2015 with a budget that fits 2 CPU cores: the first 1000 training
# tweets, 3 epochs, 128 sub-tokens of [T;Z] (Z cut to fit); full dev and test.
budget=(--set train.epochs=3 --set train.max_train_sentences=1000 --set model.max_length=128)
$py benchmarks/stage2.py --config configs/twitter2015.yaml --variant text+knowledge "${budget[@]}" --label variant-full
$py benchmarks/stage2.py --config configs/twitter2015.yaml --variant text+knowledge "${budget[@]}" --set 'model.lora={}' --label variant-lora
$py benchmarks/stage2.py --config configs/twitter2015.yaml --variant text+knowledge "${budget[@]}" --set model.head=bilstm_attention --label variant-bilstm-attention
