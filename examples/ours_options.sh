# Sourced by demo.sh and results.sh: the options `make demo` trains `ours` with, per domain. results.sh
# gives the same to DUET and BiLD, so the three distillation rows differ only in their loss (and DUET in
# its ensemble teacher). Usage: ours_options DOMAIN  -> sets the array OURS_OPTIONS.
#
# Harry Potter (docs/RESULTS.md, fourth and fifth rounds): no retain intention (the retain teacher is the
#   plain model), the intention effect amplified on forget/adversarial/neighbour only, forget-like and
#   neighbour losses (neighbour records and their refusal anchors) weighted 2, refusal anchors on
#   neighbour records only (sixth round: retain anchors cost Retain and bought nothing), retain records
#   trained along the base model's own answers (seventh round: the data's short answers trained only the
#   first token of the path the student generates). At the same 60 steps of 8 it scored 166/165/161 at
#   seeds 0/1/2, against 162/161/150 with the data's retain answers, 163/141/134 with retain anchors too,
#   and 146/94/99 for the earlier `--amplify 2` setting.
# cyber: the earlier setting (intentions with a retain prompt, `--amplify 2`); the HP setting is unmeasured there.
ours_options() {
  case "$1" in
    harry_potter) OURS_OPTIONS=(--intentions examples/harry_potter/intentions_plain_retain.json
                                --amplify forget=2,adversarial=2,neighbor=2 --weights forget=2,adversarial=2,neighbor=2
                                --refusal-anchors neighbor --response retain=base) ;;
    *) OURS_OPTIONS=(--intentions "examples/$1/intentions.json" --amplify 2) ;;
  esac
}
