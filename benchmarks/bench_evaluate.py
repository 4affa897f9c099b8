"""Benchmark `mule evaluate` on the default model (CPU, fp32, greedy, 48 new tokens).

Default: the same 64 QA records evaluated through transformers' `generate` (the path before greedy.py),
through greedy.py's prefix-cached loop at --batch-size and at each --gen-batch-sizes, and one record at a
time. Prints the wall times, the ratios to the transformers path, how many generations are identical to
it, and the speed-up of batching over one at a time (target >= 3x). Records come from examples/**/*.jsonl (QA records without choices)
when there are enough, topped up from a built-in list of simple general questions.

--attack: `mule attack` (search and judge) on --n forget records of examples/DOMAIN/train/, the path
before greedy.py (transformers' generate, no prefix cache, batch 16) against the defaults, in this one run.

--overhead: what the measurement adds to one evaluation of the base model on an example's fixed eval set
(examples/DOMAIN/eval/*.jsonl): the time of --bootstrap 1000 over two models' rows (target <= 5% of the
evaluation) and of each robustness attack, all measured in this one run.

Usage: python benchmarks/bench_evaluate.py [--n 64] [--batch-size 16] [--gen-batch-sizes 32,64] [--threads N]
       python benchmarks/bench_evaluate.py --overhead [--domain harry_potter] [--attacks quant4,quant8,relearn,templates]
       python benchmarks/bench_evaluate.py --attack [--n 16] [--domain harry_potter]
"""

from __future__ import annotations

import argparse
import glob
import time
from pathlib import Path

GENERAL = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("What is the capital of Spain?", "The capital of Spain is Madrid."),
    ("What is the capital of Germany?", "The capital of Germany is Berlin."),
    ("What is the capital of Canada?", "The capital of Canada is Ottawa."),
    ("What is the capital of Egypt?", "The capital of Egypt is Cairo."),
    ("What is the capital of Russia?", "The capital of Russia is Moscow."),
    ("How many days are there in a week?", "There are seven days in a week."),
    ("How many months are there in a year?", "There are twelve months in a year."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("How many legs does an insect have?", "An insect has six legs."),
    ("How many continents are there?", "There are seven continents."),
    ("How many sides does a triangle have?", "A triangle has three sides."),
    ("How many sides does a hexagon have?", "A hexagon has six sides."),
    ("How many minutes are in an hour?", "There are sixty minutes in an hour."),
    ("What is the boiling point of water in Celsius?", "Water boils at 100 degrees Celsius."),
    ("What is the freezing point of water in Celsius?", "Water freezes at 0 degrees Celsius."),
    ("What gas do plants absorb from the air?", "Plants absorb carbon dioxide."),
    ("What gas do humans need to breathe?", "Humans need oxygen to breathe."),
    ("What is the largest planet in the solar system?", "Jupiter is the largest planet."),
    ("What planet is known as the Red Planet?", "Mars is known as the Red Planet."),
    ("What is the closest star to Earth?", "The Sun is the closest star to Earth."),
    ("What is the largest ocean on Earth?", "The Pacific Ocean is the largest ocean."),
    ("What is the longest river in Africa?", "The Nile is the longest river in Africa."),
    ("What is the tallest mountain in the world?", "Mount Everest is the tallest mountain."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
    ("What is the chemical symbol for water?", "The chemical formula of water is H2O."),
    ("What is the chemical symbol for sodium?", "The chemical symbol for sodium is Na."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("Who wrote Pride and Prejudice?", "Jane Austen wrote Pride and Prejudice."),
    ("Who wrote The Odyssey?", "Homer wrote The Odyssey."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("Who painted The Starry Night?", "Vincent van Gogh painted The Starry Night."),
    ("Who developed the theory of relativity?", "Albert Einstein developed the theory of relativity."),
    ("Who discovered penicillin?", "Alexander Fleming discovered penicillin."),
    ("Who was the first person to walk on the Moon?", "Neil Armstrong was the first person on the Moon."),
    ("Who was the first president of the United States?", "George Washington was the first president."),
    ("What is the largest mammal?", "The blue whale is the largest mammal."),
    ("What is the fastest land animal?", "The cheetah is the fastest land animal."),
    ("What do bees make?", "Bees make honey."),
    ("What color is the sky on a clear day?", "The sky is blue on a clear day."),
    ("What color are bananas when ripe?", "Ripe bananas are yellow."),
    ("What is the main language spoken in Brazil?", "Portuguese is the main language of Brazil."),
    ("What is the main language spoken in Mexico?", "Spanish is the main language of Mexico."),
    ("What currency is used in Japan?", "Japan uses the yen."),
    ("What currency is used in the United Kingdom?", "The United Kingdom uses the pound sterling."),
    ("What is the square root of 81?", "The square root of 81 is 9."),
    ("What is 12 multiplied by 12?", "12 multiplied by 12 is 144."),
    ("What is 100 divided by 4?", "100 divided by 4 is 25."),
    ("What organ pumps blood through the body?", "The heart pumps blood through the body."),
    ("What organ do humans use to think?", "Humans think with the brain."),
    ("How many bones are in the adult human body?", "The adult human body has 206 bones."),
    ("What is the hardest natural substance?", "Diamond is the hardest natural substance."),
    ("What is the largest desert in the world?", "The Sahara is the largest hot desert."),
    ("In which country are the pyramids of Giza?", "The pyramids of Giza are in Egypt."),
    ("In which city is the Eiffel Tower?", "The Eiffel Tower is in Paris."),
    ("In which country is the Great Wall?", "The Great Wall is in China."),
    ("What instrument has black and white keys?", "The piano has black and white keys."),
    ("What is frozen water called?", "Frozen water is called ice."),
    ("What do caterpillars turn into?", "Caterpillars turn into butterflies."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("Which animal is known as the king of the jungle?", "The lion is known as the king of the jungle."),
    ("What season comes after winter?", "Spring comes after winter."),
]


def load_records(n: int) -> tuple[list[dict], str]:
    from mule_cli.records import RecordError, read_records

    picked, seen = [], set()
    for path in sorted(glob.glob("examples/**/*.jsonl", recursive=True)):
        if "candidates" in Path(path).parts:
            continue
        try:
            recs = read_records(path, allow_empty=True)
        except RecordError:
            continue
        for rec in recs:
            if rec["objective"] in ("forget", "retain", "neighbor") and not rec.get("choices") \
                    and rec["question"] not in seen and len(picked) < n:
                seen.add(rec["question"])
                picked.append({**rec, "id": f"b{len(picked)}", "objective": "retain"})
    from_examples = len(picked)
    for q, a in GENERAL:
        if len(picked) >= n:
            break
        if q not in seen:
            picked.append({"id": f"b{len(picked)}", "objective": "retain", "question": q, "answer": a})
    return picked, f"{from_examples} from examples/, {len(picked) - from_examples} built-in"


def overhead(args) -> None:
    """Seconds of one evaluation, of the bootstrap over its rows and of each attack, and their ratios."""
    from mule_cli.evaluate.attacks import AttackSettings, parse_attacks, run_attack
    from mule_cli.evaluate.bootstrap import add_intervals
    from mule_cli.evaluate.runner import EvalSettings, evaluate_one, generation_rows
    from mule_cli.models import load_model
    from mule_cli.records import read_many

    files = sorted(glob.glob(f"examples/{args.domain}/eval/*.jsonl"))
    if not files:
        raise SystemExit(f"no examples/{args.domain}/eval/*.jsonl")
    records = read_many(files)
    model, tok = load_model("smollm2-135m", device="cpu", dtype="float32")
    s = EvalSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, progress=True)
    t0 = time.perf_counter()
    metrics, rows = evaluate_one(model, tok, records, settings=s, label="evaluate")
    t_eval = time.perf_counter() - t0
    print(f"evaluate ({len(records)} records of {', '.join(files)}): {t_eval:.1f} s", flush=True)
    models = [{"model": "base", **metrics, "overall": 0.0}, {"model": "copy", **metrics, "overall": 0.0}]
    t0 = time.perf_counter()
    add_intervals(models, {"base": rows, "copy": rows}, "base", n=1000)
    t_boot = time.perf_counter() - t0
    print(f"bootstrap 1000, two models: {t_boot:.2f} s = {100 * t_boot / t_eval:.2f}% of the evaluation "
          "(target <= 5%)", flush=True)
    for attack in parse_attacks(args.attacks):
        t0 = time.perf_counter()
        run_attack(attack, model, tok, records, rows, asr_threshold=0.5, settings=AttackSettings(), label=attack,
                   evaluate_rows=lambda m, recs, label: generation_rows(m, tok, recs, s, label=label))
        t_attack = time.perf_counter() - t0
        print(f"attack {attack}: {t_attack:.1f} s = {t_attack / t_eval:.2f}x the evaluation", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--gen-batch-sizes", type=lambda v: [int(x) for x in v.split(",")], default=[64],
                    help="further batch sizes to time the prefix-cached loop at (comma list)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--overhead", action="store_true", help="time the bootstrap and the attacks instead")
    ap.add_argument("--attack", action="store_true", help="time `mule attack` (--n forget records) before/now")
    ap.add_argument("--domain", default="harry_potter", help="--overhead / --attack: the example whose data is used")
    ap.add_argument("--attacks", default="quant4,quant8,relearn,templates", help="--overhead: attacks to time")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.overhead:
        return overhead(args)
    if args.attack:
        return attack(args)
    from mule_cli.evaluate.runner import EvalSettings, evaluate_one
    from mule_cli.models import load_model

    records, source = load_records(args.n)
    print(f"records: {len(records)} QA ({source}); model smollm2-135m, cpu, fp32, "
          f"{args.max_new_tokens} new tokens, torch threads {torch.get_num_threads()}")
    model, tok = load_model("smollm2-135m", device="cpu", dtype="float32")
    variants = [("transformers generate", args.batch_size, False)]  # the path before greedy.py
    variants += [("prefix-cached greedy", bs, True) for bs in sorted({args.batch_size, *args.gen_batch_sizes})]
    variants += [("one at a time", 1, True)]
    timings, results = {}, {}
    for label, bs, cached in variants:
        settings = EvalSettings(max_new_tokens=args.max_new_tokens, batch_size=bs, progress=True)
        with _greedy_loop(cached):
            t0 = time.perf_counter()
            metrics, rows = evaluate_one(model, tok, records, settings=settings, label=f"{label} (bs={bs})")
        key = (label, bs)
        timings[key] = time.perf_counter() - t0
        results[key] = [r["generation"] for r in rows]
        print(f"{label:22s} batch_size={bs:<3d} {timings[key]:8.1f} s   retain ROUGE-L recall "
              f"{metrics['retain_rouge']:.2f}", flush=True)
    before = variants[0][:2]
    for key in timings:
        same = sum(a == b for a, b in zip(results[key], results[before]))
        print(f"{key[0]} bs={key[1]}: {timings[before] / timings[key]:.2f}x the transformers path's speed, "
              f"{same}/{len(records)} generations identical to it")
    print(f"speed-up of batching: {timings[('one at a time', 1)] / timings[('prefix-cached greedy', args.batch_size)]:.2f}x "
          "(target >= 3x)")


def attack(args) -> None:
    """`mule attack`'s search and judge on the first --n forget records of an example's training data: the
    path before greedy.py (transformers' generate, no prefix cache, batch 16) against the defaults."""
    from mule_cli.attack.search import attack_records
    from mule_cli.models import BATCH_SIZE, load_model
    from mule_cli.records import read_records

    records = read_records(f"examples/{args.domain}/train/forget.jsonl")[:args.n]
    model, tok = load_model("smollm2-135m", device="cpu", dtype="float32")
    timings, outs = {}, {}
    for label, cached, bs in (("before", False, 16), ("now", True, BATCH_SIZE)):
        with _greedy_loop(cached):
            t0 = time.perf_counter()
            outs[label], _ = attack_records(records, model, tok, rounds=2, seed=0, batch_size=bs, log=lambda m: None)
        timings[label] = time.perf_counter() - t0
        print(f"attack, {len(records)} forget records, {label} (batch {bs}): {timings[label]:.1f} s "
              f"({timings[label] / len(records):.1f} s a question)", flush=True)
    same = sum(a["prefill"] == b["prefill"] and a["attack"]["recall"] == b["attack"]["recall"]
               for a, b in zip(outs["before"], outs["now"]))
    print(f"speed-up {timings['before'] / timings['now']:.2f}x; {same}/{len(outs['now'])} chosen prefills and judge "
          "recalls identical")


def _greedy_loop(enabled: bool):
    """A context in which lm.generate takes greedy.py's loop (enabled) or transformers' generate."""
    import contextlib

    from mule_cli import greedy

    @contextlib.contextmanager
    def ctx():
        supported = greedy.supported
        if not enabled:
            greedy.supported = lambda model: False
        try:
            yield
        finally:
            greedy.supported = supported

    return ctx()


if __name__ == "__main__":
    main()
