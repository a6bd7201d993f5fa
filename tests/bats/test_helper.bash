# shellcheck shell=bash
# Shared by the bats tests: where things are, and a small real photo set to train on.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=$(cd "$REPO/.." && pwd)/shared
export TFHUB_MODULE=$SHARED/models/mobilenet_v1_100_224/feature_vector
export TG_RUNTIME=${TG_RUNTIME_UNDER_TEST:-local}

# make_tf_files DIR [PER_CLASS]: DIR/data/<class>/ with the first PER_CLASS photos of each superhero.
make_tf_files() {
  local dir=$1 count=${2:-12} class
  for class in darth_vader elsa; do
    mkdir -p "$dir/data/$class"
    find "$SHARED/datasets/superheroes/$class" -type f | sort | head -n "$count" |
      while read -r photo; do cp "$photo" "$dir/data/$class/"; done
  done
}

# first_photo CLASS: a superheroes photo of CLASS that the small set above also holds.
first_photo() {
  find "$SHARED/datasets/superheroes/$1" -type f | sort | head -n 1
}

# train_small_classifier DIR: make_tf_files DIR, then train on it quietly, seeded.
train_small_classifier() {
  make_tf_files "$1"
  bash "$REPO/train.sh" "$1" --how_many_training_steps 100 --random_seed 1 >/dev/null
}
