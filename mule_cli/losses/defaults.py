"""Paper-style default hyper-parameters of every loss, in one place.

The mule paper (arXiv 2604.15482) names its baselines but states none of their
hyper-parameters, so each value below comes from the method's own paper or its
reference code; the source is noted beside it. The distill CLI exposes every one of
these as an option, so a run can always override them.
"""

# --- the method (SPEC §4) and its uni-directional DUET ablation -------------------
DISTILL_TOP_K = 20          # K of the bidirectional top-K Smooth-L1 (SPEC §4)
DISTILL_HUBER_BETA = 1.0    # β of the Smooth-L1 / Huber distance (SPEC §4)

# --- BiLD ablation (Li et al., COLING 2025; reference code fpcsong/BiLD) ------------
BILD_TOP_K = 8              # "with only the top-8 logits"
BILD_TEMPERATURE = 3.0      # reference implementation default

# --- GA / GradDiff ----------------------------------------------------------------
GA_FORGET_WEIGHT = 1.0
GRADDIFF_FORGET_WEIGHT = 1.0   # GA on forget ...
GRADDIFF_RETAIN_WEIGHT = 1.0   # ... plus NLL on retain, equally weighted (common TOFU recipe)

# --- NPO (Zhang et al., 2024) ------------------------------------------------------
NPO_BETA = 0.1              # β used throughout the NPO paper's TOFU experiments
NPO_RETAIN_WEIGHT = 1.0     # NPO+RT: forget NPO term + 1.0 × retain NLL

# --- SimNPO (Fan et al., 2024/2025) ----------------------------------------------
SIMNPO_BETA = 2.5           # TOFU forget05 recipe of the reference code (OPTML-Group/Unlearn-Simple)
SIMNPO_GAMMA = 0.0          # the paper finds γ = 0 works best on TOFU
SIMNPO_FORGET_WEIGHT = 0.1375  # same recipe: SimNPO term × 0.1375 ...
SIMNPO_RETAIN_WEIGHT = 1.0     # ... + 1.0 × retain NLL
