"""`standardize(...)`: the whole data-standardization pipeline as one plain function.

read inputs -> passages to QA (generator model or cloze extractor) -> neighbours (generated or from a
corpus) -> ids, domains, de-duplication -> --known-by filter -> MCQ -> split -> contrastive anchors.
Every message goes to `log` (stderr in the CLI) so stdout stays pure JSONL.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable

from ..errors import MuleError
from ..models import DEFAULT_MODEL
from ..records import FORGET_LIKE, OBJECTIVES, validate_record
from .anchors import add_anchors
from .extract import extract_cloze
from .formats import Loaded, Passage, load_inputs
from .mcq import REFUSAL, make_mcq
from .split import split_records
from .text import normalize_question

NO_GENERATOR = ("none", "")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Result:
    train: list[dict]
    eval: list[dict] | None = None  # set when a split was requested
    stats: dict = field(default_factory=dict)


def parse_objectives(values, default: str = "forget") -> tuple[str, dict[str, str], bool]:
    """`--objective` values: a bare objective (the default for all inputs) and/or `PATH=objective` pairs.
    Returns (default objective, {path: objective}, whether the default was given explicitly)."""
    mapping, explicit = {}, False
    for v in values or ():
        if "=" in v:
            path, _, obj = v.rpartition("=")
            if obj not in OBJECTIVES:
                raise MuleError(f"--objective {v!r}: {obj!r} is not one of {', '.join(OBJECTIVES)}")
            mapping[path] = obj
        else:
            if v not in OBJECTIVES:
                raise MuleError(f"--objective {v!r} is not one of {', '.join(OBJECTIVES)}")
            default, explicit = v, True
    return default, mapping, explicit


def _resolver(default: str, mapping: dict[str, str], explicit: bool):
    from pathlib import Path

    norm = {str(Path(k)): v for k, v in mapping.items()}

    def objective_of(arg):
        key = str(Path(arg)) if arg != "-" else "-"
        if key in norm:
            return norm[key], True
        # a bare --objective is the default for raw inputs; unified records keep theirs (only PATH=OBJ overrides)
        return default, False

    unknown_keys = set(norm)
    return objective_of, unknown_keys


class _Models:
    """Loads each named model once (generator and --known-by may be the same model)."""

    def __init__(self, device: str, dtype: str, log):
        self.device, self.dtype, self.log, self.cache = device, dtype, log, {}

    def get(self, spec):
        if isinstance(spec, tuple):  # an already loaded (model, tokenizer) pair (library use, tests)
            return spec
        if spec not in self.cache:
            from ..models import load_model

            self.log(f"standardize: loading model {spec}")
            self.cache[spec] = load_model(spec, device=self.device, dtype=self.dtype)
        return self.cache[spec]


def _name(spec) -> str:
    if isinstance(spec, tuple):
        return getattr(spec[0], "name_or_alias", None) or "model"
    return str(spec)


def passages_to_qa(passages: list[Passage], generator, *, per_chunk: int, min_overlap: float, models: _Models,
                   batch_size: int, progress: bool, fallback: bool = True) -> tuple[list[dict], dict]:
    """QA records (without ids) for all passages; counts per method in the stats."""
    stats = {"passages": len(passages), "generated": 0, "cloze": 0, "empty_passages": 0}
    if not passages:
        return [], stats
    gen_name = None
    chunks = None
    if generator not in NO_GENERATOR and generator is not None:
        from .generate import QAGenerator

        model, tok = models.get(generator)
        gen_name = _name(generator)
        gen = QAGenerator(model, tok, gen_name, batch_size=batch_size, progress=progress)
        chunks = gen.qa_from_passages([p.text for p in passages], per_chunk=per_chunk, min_overlap=min_overlap)
    out = []
    for k, p in enumerate(passages):
        base = {"objective": p.objective, **({"domain": p.domain} if p.domain else {})}
        name = p.source.rsplit(":", 1)[0]

        def where(offset: int) -> str:
            line = p.line_at(offset)
            return f"{name}:{line}" if line is not None else p.source

        # with a generator: its pairs per chunk, and cloze questions for chunks it gave nothing for
        pieces = chunks[k] if chunks is not None else [(0, p.text, [])]
        before = len(out)
        for offset, text, pairs in pieces:
            for q, a in pairs:
                out.append({**base, "question": q, "answer": a, "source": where(offset), "generator": gen_name})
            stats["generated"] += len(pairs)
            if pairs or (gen_name and not fallback):
                continue
            for q, a, off in extract_cloze(text, max_questions=per_chunk if gen_name else None):
                out.append({**base, "question": q, "answer": a, "source": where(offset + off), "generator": "cloze"})
                stats["cloze"] += 1
        if len(out) == before:
            stats["empty_passages"] += 1
    return out, stats


def _assign_ids(records: list[dict], unified_ids: set[str]) -> list[dict]:
    taken, counters, out = set(unified_ids), {}, []
    for rec in records:
        if "id" not in rec:
            rec = dict(rec)
            obj = rec["objective"]
            n = counters.get(obj, 0)
            while True:
                n += 1
                cand = f"{obj}-{n:04d}"
                if cand not in taken:
                    break
            counters[obj] = n
            rec = {"id": cand, **rec}
            taken.add(cand)
        out.append(rec)
    return out


def _dedupe(records: list[dict]) -> tuple[list[dict], int]:
    """Drop new (id-less) records whose (objective, question) already occurred; unified records are kept."""
    seen, out, dropped = set(), [], 0
    for rec in records:
        key = (rec["objective"], normalize_question(rec["question"]))
        if "id" not in rec and key in seen:
            dropped += 1
            continue
        seen.add(key)
        out.append(rec)
    return out, dropped


def standardize(inputs, *, fmt: str = "auto", objectives=(), generator=DEFAULT_MODEL, per_chunk: int = 2,
                min_overlap: float = 0.75, fallback: bool = True, target: str | None = None,
                domain: str | None = None, neighbors: int = 0, neighbor_qa: int = 3, neighbor_corpus=(),
                mcq: bool = False, mcq_objectives=("neighbor", "retain"), n_distractors: int = 3,
                refusal: str = REFUSAL, anchors: bool = True,
                known_by=None, known_threshold: float = 0.5, eval_share: float | None = None, seed: int = 0,
                device: str = "auto", dtype: str = "auto", batch_size: int = 8, progress: bool = True,
                log: Callable[[str], None] = _stderr) -> Result:
    """Standardize raw inputs into unified records. `generator`/`known_by` take a model name, "none"/None,
    or a loaded (model, tokenizer) pair; a generator is loaded only when passages or --neighbors need it. Raises MuleError on bad input; returns records, never writes."""
    default, mapping, explicit = parse_objectives(objectives)
    objective_of, _ = _resolver(default, mapping, explicit)
    models = _Models(device, dtype, log)
    stats: dict = {}

    loaded = load_inputs(inputs, fmt, objective_of)
    if neighbor_corpus:
        more = load_inputs(neighbor_corpus, fmt, lambda _p: ("neighbor", True))
        loaded = Loaded(loaded.items + more.items, loaded.passages + more.passages)
    if neighbors and not target:
        raise MuleError("--neighbors needs --target (the concept to stay outside of)")
    if neighbors and generator in NO_GENERATOR:
        raise MuleError("--neighbors needs a generator model (--generator MODEL); with --generator none, "
                        "give a neighbour corpus with --neighbor-corpus PATH instead")

    unified = [it.record for it in loaded.items if it.unified]
    seen_ids: dict[str, str] = {}
    for it in loaded.items:
        if it.unified:
            if it.record["id"] in seen_ids:
                raise MuleError(f"{it.where}: field 'id': duplicate id {it.record['id']!r} "
                                f"(also at {seen_ids[it.record['id']]})")
            seen_ids[it.record["id"]] = it.where
    new = [it.record for it in loaded.items if not it.unified]
    qa, stats["passages"] = passages_to_qa(loaded.passages, generator, per_chunk=per_chunk,
                                           min_overlap=min_overlap, models=models, batch_size=batch_size,
                                           progress=progress, fallback=fallback)
    new += qa

    if neighbors:
        from .generate import QAGenerator

        model, tok = models.get(generator)
        gen = QAGenerator(model, tok, _name(generator), batch_size=batch_size, progress=progress)
        concepts = gen.neighbor_concepts(target, neighbors)
        pairs = gen.qa_about(concepts, neighbor_qa) if concepts else []
        stats["neighbors"] = {"concepts": concepts, "records": sum(len(p) for p in pairs)}
        log(f"standardize: neighbour concepts for {target!r}: {', '.join(concepts) or '(none parsed)'}")
        for concept, cp in zip(concepts, pairs):
            for q, a in cp:
                new.append({"objective": "neighbor", "question": q, "answer": a, "domain": concept,
                            "source": f"neighbors of {target}: {concept}", "generator": _name(generator)})

    for rec in new:
        if domain and not rec.get("domain"):
            rec["domain"] = domain
        elif target and rec["objective"] in FORGET_LIKE and not rec.get("domain"):
            rec["domain"] = target
    records, stats["duplicates_dropped"] = _dedupe(unified + new)
    records = _assign_ids(records, set(seen_ids))
    for i, rec in enumerate(records, start=1):
        validate_record(rec, "<standardized>", i)
    if not records:
        raise MuleError("standardize: the inputs gave no records (empty files, or no usable sentences)")

    if known_by not in (None, "", "none"):
        from .known import filter_known

        model, tok = models.get(known_by)
        records, kstats = filter_known(records, model, tok, threshold=known_threshold, batch_size=batch_size * 2,
                                       progress=progress)
        stats["known_by"] = kstats
        for obj, s in kstats.items():
            log(f"standardize: known-by {_name(known_by)}: {obj}: kept {s['kept']}, dropped {s['dropped']}")
        if not records:
            raise MuleError(f"standardize: --known-by {_name(known_by)} dropped every record")

    if mcq:
        records = make_mcq(records, n_distractors=n_distractors, seed=seed, refusal=refusal,
                           objectives=mcq_objectives)

    sides = [records] if eval_share is None else list(split_records(records, eval_share, seed))
    if anchors:
        anchored = []
        for side in sides:
            side, astats = add_anchors(side)
            anchored.append(side)
            stats.setdefault("anchors", []).append(astats)
            if astats["no_match"]:
                log(f"standardize: {astats['no_match']} forget record(s) got no anchor "
                    "(no retain/neighbour record shares a word with them)")
        sides = anchored
    counts = {}
    for rec in records:
        counts[rec["objective"]] = counts.get(rec["objective"], 0) + 1
    stats["counts"] = counts
    summary = ", ".join(f"{k} {v}" for k, v in counts.items())
    p = stats["passages"]
    log(f"standardize: {len(records)} records ({summary}); passages {p['passages']} -> "
        f"{p['generated']} generated + {p['cloze']} cloze QA; {stats['duplicates_dropped']} duplicates dropped")
    if eval_share is not None:
        log(f"standardize: split -> train {len(sides[0])}, eval {len(sides[1])} (seed {seed})")
        return Result(sides[0], sides[1], stats)
    return Result(sides[0], None, stats)
