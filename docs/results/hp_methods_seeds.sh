#!/usr/bin/env bash
# Rebuilds docs/results/hp_methods_seeds.md (docs/RESULTS.md, "Harry Potter, every method over three seeds
# (old split)") from the per-run evaluate reports in docs/results/: each report is followed by the rows it
# contributes (old=shown name). The reports are `mule evaluate --json` files, which today's examples/seed_means.py
# (per-record files, intervals) does not read, so this runs the report-pooling seed_means.py of commit f8e8fde.
# Run from the repository root of a git checkout: bash docs/results/hp_methods_seeds.sh
set -euo pipefail
D=docs/results
SEED_MEANS=$(mktemp --suffix=.py)
trap 'rm -f "$SEED_MEANS"' EXIT
git show f8e8fde:examples/seed_means.py > "$SEED_MEANS"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-.venv/bin/python}" "$SEED_MEANS" \
  "$D/hp_methods.json:sft=SFT,ga=GA,graddiff=GradDiff,npo=NPO,simnpo=SimNPO,ours=ours (earlier make demo),duet=DUET (earlier teacher),bild=BiLD (earlier teacher),smollm2-135m+oracle=in-context oracle router,smollm2-135m+ensemble=in-context ensemble prompt" \
  "$D/hp_r4_anchors_fw2_batch8.json:best8=ours (neighbour weight 1)" \
  "$D/hp_r4_seed1.json:demo=ours (earlier make demo),best8=ours (neighbour weight 1)" \
  "$D/hp_r4_seed1_graddiff_seed2.json:graddiff=GradDiff,demo=ours (earlier make demo),best8=ours (neighbour weight 1)" \
  "$D/hp_r4_seed1_npo_duet.json:npo=NPO,duet=DUET (earlier teacher)" \
  "$D/hp_r5_seed2_npo_graddiff_beta3.json:npo=NPO,graddiff=GradDiff" \
  "$D/hp_r5_n2_seed1_duet_sft.json:b8n2=ours (retain anchors too),duet=DUET (neighbour weight 1),sft=SFT" \
  "$D/hp_r5_n2_seed2_duet.json:b8n2=ours (retain anchors too),duet=DUET (neighbour weight 1)" \
  "$D/hp_r5_n2_seed0_bild.json:b8n2=ours (retain anchors too),bild=BiLD (neighbour weight 1)" \
  "$D/hp_r5_bild.json:bild=BiLD (retain anchors too)" "$D/hp_r5_duet.json:duet=DUET (retain anchors too)" \
  "$D/hp_r6_anchors_neighbor.json:an1=ours (data's retain answers)" \
  "$D/hp_r6_anchors_neighbor_seed1_seed2.json:an1=ours (data's retain answers)" \
  "$D/hp_r6_duet_seed0_bild_seeds012.json:duet=DUET (data's retain answers),bild=BiLD (data's retain answers)" \
  "$D/hp_r6_duet_seed1_seed2.json:duet=DUET (data's retain answers)" \
  "$D/hp_r7_response_base_forget_base.json:rb1=ours" "$D/hp_r7_response_base_seed1_sentences.json:rb1=ours" \
  "$D/hp_r7_response_base_seed2.json:rb1=ours" "$D/hp_r8_duet_bild_seeds01_steps120.json:duet=DUET,bild=BiLD" \
  "$D/hp_r8_duet_bild_seed2_protect.json:duet=DUET,bild=BiLD" \
  --markdown "$D/hp_methods_seeds.md"
