#!/usr/bin/env bash
# The main job on the embedded default: set up .venv, write a synthetic EM data set (no
# download, no data of ours), train the ISBI 2012 membrane bundle on it for about a minute,
# evaluate it, run inference, and log everything to MLflow.
#
# Usage: bash scripts/demo.sh [OUT_DIR]        (default: ./demo_output)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
CSEG_CRF_OPTIONAL=1 bash scripts/setup.sh crf gui  # the same environment as scripts/test.sh
out="$(mkdir -p "${1:-demo_output}" && cd "${1:-demo_output}" && pwd)"
py="$root/.venv/bin/python"
bundle="$root/bundles/isbi2012_em_membrane_segmentation"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

echo "== 1/4 synthetic EM data (cseg phantom) -> $out/data"
"$root/.venv/bin/cseg" phantom "$out/data" --n_train 12 --n_test 2 --size 256 --seed 0 --overwrite

common=(--dataset_dir "$out/data" --output_dir "$out/train" --train_indices "[0,1,2,3,4,5,6,7,8,9]" --val_indices "[10,11]"
        --num_workers 0 --mlflow_experiment_name demo)
echo "== 2/4 training (about a minute) -> $out/train"
"$py" -m monai.bundle run training --config_file "$bundle/configs/train.json" "${common[@]}" \
    --patch_size "[128,128]" --num_samples 4 --batch_size 4 --max_epochs 100 --val_interval 20 --progress_bar True

echo "== 3/4 evaluation of the best checkpoint on the validation slices -> $out/train/eval"
"$py" -m monai.bundle run evaluating --config_file "['$bundle/configs/train.json','$bundle/configs/evaluate.json']" \
    "${common[@]}" --ckpt_path "$out/train/models/model.pt"

echo "== 4/4 inference on the unlabelled test slices -> $out/predictions"
"$root/.venv/bin/cseg" infer "$bundle" "$out/data/test/image" "$out/predictions" --ckpt_path "$out/train/models/model.pt"

echo
echo "Done."
echo "  data:         $out/data"
echo "  checkpoints:  $out/train/models (best: model.pt)"
echo "  training log: $out/train/train.log"
echo "  metrics:      $out/train/eval/metrics.csv"
echo "  pictures:     $out/train/plots (overlays, learning curve)"
echo "  predictions:  $out/predictions (STEM_prob.tif, STEM_labels.tif)"
echo "  MLflow UI:    $root/.venv/bin/cseg mlflow-ui $out/train   (then open http://127.0.0.1:5000)"
echo "           or:  $root/.venv/bin/mlflow ui --backend-store-uri sqlite:///$out/train/mlruns.db --host 127.0.0.1"
