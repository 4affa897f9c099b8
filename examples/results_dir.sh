# Sourced by results.sh and seeds.sh, so both agree on where one seed's runs and report land.
# Usage: results_dir DOMAIN SEED  -> prints runs/results/DOMAIN (seed 0) or runs/results/DOMAIN-seedN.
results_dir() {
  local dir=runs/results/$1
  [ "$2" = 0 ] || dir=$dir-seed$2
  echo "$dir"
}
