#!/usr/bin/env bash
# The Oozie shell action's body: one step of the MNIST pipeline per call. Exit codes are tfoy's (see README).
set -euo pipefail
step=$1 base=$2 tag=${3:-}
jobs=${TFOY_JOBS_DIR:-/opt/tfoy/conf/jobs}
case "$step" in
  setup)
    python -m examples.mnist.mnist_data_setup --output "$base/data" --format tfr --num-partitions 4 --overwrite ;;
  train)
    exec tfoy submit "$jobs/mnist_train.yaml" ${tag:+--reattach "$tag"} \
      --set "model_dir=$base/model" --set "export_dir=$base/export" \
      --set "args=[--data,$base/data,--epochs,5]" ;;
  inference)
    exec tfoy submit "$jobs/mnist_inference.yaml" \
      --set "args=[--data,$base/data,--model,$base/export,--output,$base/predictions]" ;;
  *) echo "usage: $0 setup|train|inference BASE [TAG]" >&2; exit 2 ;;
esac
