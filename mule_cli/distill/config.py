"""Every knob of a distill run in one dataclass, so the CLI, library callers, run.json and resume
all agree on what a run is."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import MuleError
from ..intentions import REFUSAL, parse_demos
from ..losses import defaults as LD
from ..objective_options import objective_items, per_objective
from ..quant import GRID_NAMES
from ..records import FORGET_LIKE, OBJECTIVES
from .refusal_anchors import parse_objectives as parse_anchor_objectives

DISTILL_METHODS = ("ours", "duet", "bild")  # distil from the intention-prompted teacher
METHODS = (*DISTILL_METHODS, "sft", "ga", "graddiff", "npo", "simnpo")
RESPONSE_SOURCES = ("data", "teacher", "base")
RETAIN_NLL_METHODS = ("graddiff", "npo", "simnpo")  # the methods --retain-weight applies to
ON_GRID_CHOICES = ("auto", "yes", "no")  # auto: `ours` on a model that ships on the Q4_1 grid (on_grid.py)

# The options whose default depends on the method. ours, DUET and BiLD default to the best measured setting
# (docs/RESULTS.md, "Defaults"): the intention effect amplified x2 on forget, adversarial and neighbour
# records, those objectives weighted 2, a refusal anchor per neighbour record, retain records trained along
# the base model's own answers; `ours` amplifies forget records x8 and adversarial records x16 and shows the
# neighbour demos in the base model's own words (measured for ours only). The baselines have no teacher and
# keep the plain setting.
DISTILL_DEFAULTS = {"amplify": "forget=2,adversarial=2,neighbor=2", "weights": "forget=2,adversarial=2,neighbor=2",
                    "refusal_anchors": "neighbor", "response": "retain=base", "demo_answers": "data"}
OURS_DEFAULTS = {**DISTILL_DEFAULTS, "amplify": "forget=8,adversarial=16,neighbor=2", "demo_answers": "neighbor=base"}
BASELINE_DEFAULTS = {"amplify": 0.0, "weights": "", "refusal_anchors": "", "response": "data", "demo_answers": "data"}
DEMO_ANSWER_SOURCES = ("data", "base")


def method_defaults(method: str) -> dict:
    if method == "ours":
        return OURS_DEFAULTS
    return DISTILL_DEFAULTS if method in DISTILL_METHODS else BASELINE_DEFAULTS


def parse_response(text: str | dict | None) -> dict[str, str]:
    """`--response`: one source for every objective (`teacher`) or per objective
    (`retain=base,neighbor=base`, objectives not named keep `data`).

    data = the record's answer; teacher = the prompted teacher's own greedy answer; base = the frozen base
    model's greedy answer to the plain question, i.e. the path the student generates along before
    unlearning (keeping retain on it keeps the answers a user already gets)."""
    def source(key, raw):
        if raw not in RESPONSE_SOURCES:
            raise MuleError(f"--response: {key}{raw} is not a source (use one of {', '.join(RESPONSE_SOURCES)})")
        return raw
    return per_objective(text, "--response", "objective=source", "data", source)


def parse_demo_answers(text: str | dict | None) -> dict[str, str]:
    """`--demo-answers`: what the teacher's few-shot demonstrations answer, per objective (`neighbor=base`;
    objectives not named keep `data`). base = the frozen base model's own greedy answer to the demo question
    where that answer states the data answer (every word of it, ROUGE-L recall 1), else the data answer; the
    demos are drawn first from the records where it does (cyber: Retain +13.9, docs/RESULTS.md).

    Why: demos in the data's short style ("J.R.R. Tolkien") make the teacher, and through it the student,
    answer in a few words where the base answers in a sentence, and the small default model recalls general
    facts less well without its lead-in (Retain). The recall check keeps a demo from showing a wrong or
    evasive answer. Forget-like demos always show the refusal."""
    def source(key, raw):
        if raw not in DEMO_ANSWER_SOURCES:
            raise MuleError(f"--demo-answers: {key}{raw} is not a source (use data or base)")
        return raw
    if text not in (None, "") and not isinstance(text, dict) and "=" not in str(text):
        value = source("", str(text).strip())  # one source: the objectives whose demos answer
        return {o: ("data" if o in FORGET_LIKE else value) for o in OBJECTIVES}
    out = per_objective(text, "--demo-answers", "objective=source", "data", source)
    refused = [o for o in FORGET_LIKE if out[o] != "data"]
    if refused:
        raise MuleError(f"--demo-answers: {', '.join(refused)} demos show the refusal; name neighbor or retain")
    return out


def parse_amplify(value: float | str | dict | None) -> dict[str, float]:
    """`--amplify`: one λ for the forget-like objectives (`2` = forget and adversarial, as in the paper's
    extension) or per objective (`forget=2,adversarial=2,neighbor=1`; objectives not named get 0).
    λ on neighbour pushes the teacher further from the plain model in the "answer, do not refuse"
    direction of its intention, against the refusal habit the forget side spreads."""
    def number(key, raw):
        try:
            lam = float(raw)
        except (TypeError, ValueError):
            raise MuleError(f"--amplify: {key}{raw} is not a number") from None
        if not lam >= 0:
            raise MuleError(f"--amplify: {key}{raw} must be >= 0")
        return lam
    if value is not None and not isinstance(value, dict) and "=" not in str(value):
        lam = number("", value)
        return {o: (lam if o in FORGET_LIKE else 0.0) for o in OBJECTIVES}
    return per_objective(value, "--amplify", "objective=number", 0.0, number)


def parse_weights(text: str | dict | None) -> dict[str, float]:
    """`forget=1,retain=0.5` -> {objective: weight}; objectives not named keep weight 1. A bare number is
    an error: one weight for every objective would change nothing."""
    if text and not isinstance(text, dict) and "=" not in str(text):
        objective_items(text, "--weights", "objective=number")  # raises "'0.5' is not objective=number"

    def number(label, raw):
        try:
            weight = float(raw)
        except (TypeError, ValueError):
            raise MuleError(f"--weights: {label}{raw!r} is not a number") from None
        if weight < 0:
            raise MuleError(f"--weights: {label.rstrip('=')} must be >= 0")
        return weight
    return per_objective(text or None, "--weights", "objective=number", 1.0, number)


@dataclass
class DistillConfig:
    """Options of one run. Defaults follow the paper (K=20, β=1) and SPEC §7's CPU recipe."""

    model: str = "smollm2-135m"
    data: list = field(default_factory=list)  # JSONL paths (- = stdin)
    output: str = "runs/distill"
    method: str = "ours"
    target: str | None = None
    intentions: str | None = None
    teacher: str = "oracle"  # oracle | ensemble
    demos: int | str | dict = 3  # few-shot demos per teacher context: 3, or per objective "retain=0"
    # None = the method's default (DISTILL_DEFAULTS / BASELINE_DEFAULTS)
    amplify: float | str | dict | None = None  # λ for forget/adversarial, or per objective "forget=2,neighbor=1"
    response: str | None = None  # data | teacher | base, or per objective: "retain=base,neighbor=teacher"
    demo_answers: str | None = None  # what answering demos show: data | base, or per objective "neighbor=base"
    weights: dict | str | None = None  # "forget=2,retain=0.5"; objectives not named weigh 1
    refusal: str = REFUSAL  # what forget-like demos, SFT and refusal anchors answer (the prompts should say it too)
    refusal_anchors: str | None = None  # "neighbor,retain": copies forced on the refusal, plain teacher (refusal_anchors.py)
    # loss hyper-parameters
    top_k: int = LD.DISTILL_TOP_K
    beta: float = LD.DISTILL_HUBER_BETA
    bild_top_k: int = LD.BILD_TOP_K
    bild_temperature: float = LD.BILD_TEMPERATURE
    npo_beta: float = LD.NPO_BETA
    simnpo_beta: float = LD.SIMNPO_BETA
    simnpo_gamma: float = LD.SIMNPO_GAMMA
    forget_weight: float | None = None  # per-method scale of the forget-side term (None = method default)
    retain_weight: float | None = None  # graddiff/npo/simnpo: scale of the retain NLL term (None = method default)
    loss_impl: str = "auto"
    # optimisation
    lr: float = 5e-5
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "constant"  # constant | linear | cosine
    max_grad_norm: float = 1.0
    lora_rank: int = 0  # 0 = train every weight; R = rank-R adapters on the decoder projections (lora.py)
    lora_alpha: float = 16.0
    quant_aware: str | None = None  # q4_1 | int4 | int8: the student trains through this grid (quant_aware.py)
    on_grid: str = "auto"  # auto | yes | no: train only the Q4_1 grid's steps and offsets (on_grid.py)
    batch_size: int = 8
    grad_accum: int = 1
    epochs: int = 3
    max_steps: int | None = None
    seed: int = 0
    max_length: int = 1024
    # system
    device: str = "auto"
    dtype: str = "auto"
    fsdp: bool = False
    gradient_checkpointing: bool = False
    save_every: int = 0
    resume: bool = False
    overwrite: bool = False
    max_bad_steps: int = 5
    grad_cosine: int = 0
    progress: bool = True

    def __post_init__(self):
        defaults = method_defaults(self.method)
        for key in ("amplify", "weights", "response", "demo_answers"):
            if getattr(self, key) is None:
                setattr(self, key, defaults[key])
        self.weights = parse_weights(self.weights)
        if self.refusal_anchors is None:  # anchors train as retain: none by default when retain weighs 0
            self.refusal_anchors = defaults["refusal_anchors"] if self.weights["retain"] > 0 else ""
        lams = parse_amplify(self.amplify)  # the forget-only form stays a plain number
        forget_only = lams["forget"] == lams["adversarial"] and not lams["retain"] and not lams["neighbor"]
        self.amplify = lams["forget"] if forget_only else lams
        counts = parse_demos(self.demos)  # checks it; one count stays a plain int (run.json, resume checks)
        self.demos = next(iter(counts.values())) if len(set(counts.values())) == 1 else counts
        if isinstance(self.data, (str, bytes)):
            self.data = [self.data]
        self.validate()

    def validate(self) -> None:
        parse_response(self.response)
        parse_demo_answers(self.demo_answers)
        parse_anchor_objectives(self.refusal_anchors)
        checks = [
            (self.method in METHODS, f"--method must be one of {', '.join(METHODS)}"),
            (isinstance(self.refusal, str) and bool(self.refusal.strip()), "--refusal must be a non-empty text"),
            (self.teacher in ("oracle", "ensemble"), "--teacher must be oracle or ensemble"),
            (self.loss_impl in ("auto", "fused", "reference"), "--loss-impl must be auto, fused or reference"),
            (self.schedule in ("constant", "linear", "cosine"), "--schedule must be constant, linear or cosine"),
            (self.batch_size >= 1, "--batch-size must be >= 1"),
            (self.grad_accum >= 1, "--grad-accum must be >= 1"),
            (self.epochs >= 1, "--epochs must be >= 1"),
            (self.max_steps is None or self.max_steps >= 1, "--max-steps must be >= 1"),
            (self.lr > 0, "--lr must be > 0"),
            (self.lora_rank >= 0 and self.lora_alpha > 0, "--lora-rank must be >= 0 and --lora-alpha > 0"),
            (self.quant_aware in (None, *GRID_NAMES),
             f"--quant-aware must be one of {', '.join(GRID_NAMES)}, not {self.quant_aware!r}"),
            (not (self.lora_rank and self.fsdp), "--lora-rank does not work with --fsdp yet"),
            (self.on_grid in ON_GRID_CHOICES, f"--on-grid must be one of {', '.join(ON_GRID_CHOICES)}"),
            (self.on_grid != "yes" or not (self.lora_rank or self.quant_aware or self.fsdp),
             "--on-grid yes trains the grid itself; it does not combine with --lora-rank, --quant-aware or --fsdp"),
            (self.top_k >= 1 and self.bild_top_k >= 1, "top-k values must be >= 1"),
            (self.beta > 0, "--beta must be > 0"),
            (self.save_every >= 0 and self.grad_cosine >= 0, "--save-every/--grad-cosine must be >= 0"),
            (self.max_bad_steps >= 1, "--max-bad-steps must be >= 1"),
            (any(w > 0 for w in self.weights.values()), "--weights: at least one objective needs a weight > 0"),
            (self.method in DISTILL_METHODS or set(parse_demo_answers(self.demo_answers).values()) == {"data"},
             f"--demo-answers base shapes the prompted teacher's demos; {self.method} has no teacher"),
            (self.retain_weight is None or self.method in RETAIN_NLL_METHODS,
             f"--retain-weight scales the retain NLL of {', '.join(RETAIN_NLL_METHODS)}; {self.method} has none"),
        ]
        for ok, message in checks:
            if not ok:
                raise MuleError(message)

    @property
    def response_sources(self) -> dict[str, str]:
        return parse_response(self.response)

    @property
    def demo_answer_sources(self) -> dict[str, str]:
        return parse_demo_answers(self.demo_answers)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # Options that change the numbers a run produces: a resume must keep them.
    RESUME_KEYS = ("model", "method", "target", "intentions", "teacher", "demos", "amplify", "response",
                   "demo_answers", "refusal", "refusal_anchors", "weights", "top_k", "beta",
                   "bild_top_k", "bild_temperature", "npo_beta", "simnpo_beta", "simnpo_gamma", "forget_weight",
                   "retain_weight", "lr", "weight_decay", "warmup_steps", "schedule", "max_grad_norm", "lora_rank",
                   "lora_alpha", "quant_aware", "on_grid", "batch_size", "grad_accum", "epochs", "max_steps", "seed",
                   "max_length")


# What a checkpoint that predates an option trained with, where that differs from the option's default now:
# before --on-grid every weight trained, so such a checkpoint holds no grid parameters to resume.
PREDATED = {"on_grid": "no"}


def config_changes(saved: dict, cfg: DistillConfig) -> list[str]:
    """RESUME_KEYS whose value differs from a checkpoint's config. A key the checkpoint predates (an
    option added since) counts as what it trained with (PREDATED, else the option's default)."""
    defaults = DistillConfig()
    return [k for k in DistillConfig.RESUME_KEYS
            if saved.get(k, PREDATED.get(k, getattr(defaults, k))) != getattr(cfg, k)]
