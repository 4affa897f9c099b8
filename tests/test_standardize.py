"""mule standardize: readers, cloze extractor, MCQ, anchors, split, CLI (no model needed here)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import write_jsonl
from mule_cli.cli import cli
from mule_cli.errors import MuleError
from mule_cli.records import read_records, validate_record
from mule_cli.standardize.anchors import add_anchors
from mule_cli.standardize.extract import extract_cloze
from mule_cli.standardize.formats import load_inputs
from mule_cli.standardize.mcq import make_mcq
from mule_cli.standardize.pipeline import standardize
from mule_cli.standardize.split import parse_split, split_records

PASSAGE = ("Harry Potter first met Ron Weasley on the Hogwarts Express in 1991. The train leaves from platform "
           "nine and three-quarters at King's Cross station. Hermione Granger was sorted into Gryffindor by the "
           "Sorting Hat. J. K. Rowling published the first book in 1997. It was short.")


def run(args, input=None):
    result = CliRunner().invoke(cli, args, input=input, catch_exceptions=False)
    return result


def _std(paths, **kw):
    kw.setdefault("generator", "none")
    kw.setdefault("progress", False)
    kw.setdefault("log", lambda m: None)
    return standardize([str(p) for p in paths], **kw)


# ------------------------------------------------------------------------------------------ formats

SHAPES = {
    "qa.jsonl": [{"question": "What is the capital of France?", "answer": "Paris"}],
    "pc.jsonl": [{"prompt": "Who painted the Mona Lisa?", "completion": "Leonardo da Vinci"}],
    "alpaca.jsonl": [{"instruction": "Name the largest planet.", "input": "", "output": "Jupiter"}],
    "chat.jsonl": [{"messages": [{"role": "user", "content": "What gas do plants absorb?"},
                                 {"role": "assistant", "content": "Carbon dioxide"}]}],
    "mmlu.jsonl": [{"question": "2+2?", "choices": ["3", "4", "5"], "answer": 1, "subject": "math"}],
    "letter.jsonl": [{"question": "Sky colour?", "A": "Blue", "B": "Green", "answer": "A"}],
    "text.jsonl": [{"text": PASSAGE}],
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_jsonl_shapes_round_trip(tmp_path, name):
    path = write_jsonl(tmp_path / name, SHAPES[name])
    out = tmp_path / "out.jsonl"
    res = run(["standardize", str(path), "--generator", "none", "--objective", "retain", "-q", "-o", str(out)])
    assert res.exit_code == 0, res.output
    recs = read_records(out)  # validates every record
    assert recs and all(r["objective"] == "retain" for r in recs)
    assert all(r["source"].startswith(str(path)) for r in recs)
    if name == "mmlu.jsonl":
        assert recs[0]["answer"] == "4" and recs[0]["answer_index"] == 1 and recs[0]["domain"] == "math"
    if name == "letter.jsonl":
        assert recs[0]["choices"] == ["Blue", "Green"] and recs[0]["answer_index"] == 0
    if name == "alpaca.jsonl":
        assert recs[0]["question"] == "Name the largest planet." and "input" not in recs[0]


def test_csv_text_folder_and_unified_pass_through(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "qa.csv").write_text('question,answer\n"Who wrote The Hobbit?","J. R. R. Tolkien"\n')
    (tmp_path / "c" / "mmlu.csv").write_text("What is 2+2?,3,4,5,6,B\n")
    (tmp_path / "c" / "notes.md").write_text("# Title\n\n" + PASSAGE + "\n")
    (tmp_path / "c" / ".hidden.md").write_text("Secret Person lives in Nowhere Town since 1900 always.\n")
    unified = {"id": "keep-me", "objective": "neighbor", "question": "Q?", "answer": "A", "extra": {"x": 1}}
    write_jsonl(tmp_path / "c" / "u.jsonl", [unified])
    recs = _std([tmp_path / "c"], anchors=False).train
    for i, r in enumerate(recs):
        validate_record(r, "out", i)
    by_src = {r["source"].split(":")[0].rsplit("/", 1)[-1] for r in recs if "source" in r}
    assert by_src == {"qa.csv", "mmlu.csv", "notes.md"}
    assert [r for r in recs if r["id"] == "keep-me"] == [unified]  # untouched, objective kept
    mmlu = next(r for r in recs if r.get("choices") and r["question"] == "What is 2+2?")
    assert mmlu["answer"] == "4"
    assert not any("Secret" in r["question"] for r in recs)
    assert len({r["id"] for r in recs}) == len(recs)


def test_stdin_and_objective_mapping(tmp_path):
    retain = write_jsonl(tmp_path / "r.jsonl", [{"question": "What is the capital of Italy?", "answer": "Rome"}])
    res = run(["standardize", "-", str(retain), "--objective", f"{retain}=retain", "--generator", "none", "-q"],
              input=PASSAGE + "\n")
    assert res.exit_code == 0, res.output
    recs = [json.loads(l) for l in res.stdout.splitlines()]
    assert {r["objective"] for r in recs} == {"forget", "retain"}
    assert next(r for r in recs if r["objective"] == "retain")["answer"] == "Rome"
    assert all(r["source"].startswith("<stdin>:") for r in recs if r["objective"] == "forget")


@pytest.mark.parametrize("name,content,needle", [
    ("bad.jsonl", '{"question": "ok?", "answer": "a"}\n{"question": "x?", "answer": \n', "bad.jsonl: line 2"),
    ("noq.jsonl", '{"question": "ok?", "answer": "a"}\n{"foo": 1}\n', "bad"),
    ("noa.jsonl", '{"question": "ok?"}\n', "noa.jsonl: line 1: no answer field"),
    ("idx.jsonl", '{"question": "q?", "choices": ["a", "b"], "answer": 5}\n', "idx.jsonl: line 1: answer index"),
    ("uni.jsonl", '{"id": "1", "objective": "forgot", "question": "q", "answer": "a"}\n', "uni.jsonl: line 1: field 'objective'"),
    ("rows.csv", "question,answer\nq1?,a1\nq2?,a2,extra\n", "rows.csv: line 3"),
])
def test_malformed_inputs_name_file_and_line(tmp_path, name, content, needle):
    path = tmp_path / name
    path.write_text(content)
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(cli, ["standardize", str(path), "--generator", "none", "-q", "-o", str(out)])
    assert res.exit_code == 2
    if needle == "bad":
        needle = f"{name}: line 2: no question field"
    assert needle in res.output
    assert not out.exists()


def test_duplicate_unified_ids_across_files_are_an_error(tmp_path):
    rec = {"id": "x", "objective": "forget", "question": "q?", "answer": "a"}
    a, b = write_jsonl(tmp_path / "a.jsonl", [rec]), write_jsonl(tmp_path / "b.jsonl", [rec])
    with pytest.raises(MuleError, match="duplicate id 'x'"):
        _std([a, b])


# ------------------------------------------------------------------------------------------ extractor

def test_cloze_extractor_is_stable_on_a_fixed_passage():
    got = extract_cloze(PASSAGE)
    assert [(q, a) for q, a, _ in got] == [
        ("Fill in the blank: Harry Potter first met Ron Weasley on the ____ in 1991.", "Hogwarts Express"),
        ("Fill in the blank: The train leaves from platform nine and three-quarters at ____ station.", "King's Cross"),
        ("Fill in the blank: ____ was sorted into Gryffindor by the Sorting Hat.", "Hermione Granger"),
        ("Fill in the blank: ____ published the first book in 1997.", "J. K. Rowling"),
    ]  # "It was short." is too short to ask about
    assert extract_cloze(PASSAGE) == got
    for q, a, off in got:
        assert a in PASSAGE and a not in q and PASSAGE[off:].startswith(q.split(": ", 1)[1].split("____")[0])


def test_text_sources_point_at_the_sentence_line(tmp_path):
    md = tmp_path / "p.md"
    md.write_text("# Heading\n\nHarry Potter first met Ron Weasley on the Hogwarts Express in 1991.\n"
                  "The train leaves from platform nine and three-quarters at King's Cross station.\n")
    recs = _std([md]).train
    assert [r["source"] for r in recs] == [f"{md}:3", f"{md}:4"]


# ------------------------------------------------------------------------------------------ MCQ / anchors / split

def _qa(n, objective, domain=None):
    return [{"id": f"{objective}-{i}", "objective": objective, "question": f"Question number {i} about {objective}?",
             "answer": f"Answer {i}", **({"domain": domain} if domain else {})} for i in range(n)]


def test_mcq_has_one_correct_and_one_refusal_and_is_seeded():
    recs = _qa(6, "neighbor", "fantasy") + _qa(3, "retain")
    out = make_mcq(recs, n_distractors=3, seed=7)
    for src, r in zip(recs, out):
        validate_record(r)
        assert r["choices"].count(src["answer"]) == 1 and r["choices"][r["answer_index"]] == src["answer"]
        assert r["choices"].count("I do not know.") == 1
        assert len(r["choices"]) == len(set(r["choices"]))
        others = {x["answer"] for x in recs if x["objective"] == src["objective"]}
        assert set(r["choices"]) - {"I do not know."} <= others  # distractors from the same objective
    assert make_mcq(recs, seed=7) == out
    assert [r["choices"] for r in make_mcq(recs, seed=8)] != [r["choices"] for r in out]
    forget = _qa(3, "forget")
    assert make_mcq(forget) == forget  # forget records are scored by ROUGE, not MCQ (by default)
    assert all(r["choices"].count("I do not know.") == 1 for r in make_mcq(forget, objectives=["forget"]))
    assert make_mcq(recs[:1], seed=0)[0]["choices"] in (["Answer 0", "I do not know."], ["I do not know.", "Answer 0"])


def test_anchors_point_to_the_most_similar_retain_or_neighbor():
    recs = [
        {"id": "f1", "objective": "forget", "question": "Which train takes students to Hogwarts?", "answer": "Hogwarts Express"},
        {"id": "f2", "objective": "forget", "question": "Who wrote the Harry Potter books?", "answer": "J. K. Rowling"},
        {"id": "r1", "objective": "retain", "question": "Which train crosses Siberia?", "answer": "The Trans-Siberian Express"},
        {"id": "n1", "objective": "neighbor", "question": "Who wrote the Narnia books?", "answer": "C. S. Lewis"},
        {"id": "a1", "objective": "adversarial", "question": "Who wrote the Harry Potter books?", "answer": "J. K. Rowling"},
    ]
    out, stats = add_anchors(recs)
    ids = {r["id"] for r in out}
    assert out[0]["anchor_of"] == "r1" and out[1]["anchor_of"] == "n1"
    assert all(r.get("anchor_of") in ids for r in out if r["objective"] == "forget")
    assert "anchor_of" not in out[2] and "anchor_of" not in out[4]
    assert stats["anchored"] == 2


def test_split_is_disjoint_grouped_and_reproducible():
    recs = _qa(20, "forget") + _qa(10, "retain")
    twins = [{"id": f"adv-{i}", "objective": "adversarial", "question": f"question number {i} about FORGET",
              "answer": "x", "prefill": "Sure,", "anchor_of": f"forget-{i}"} for i in range(0, 20, 3)]
    recs += twins
    train, evals = split_records(recs, 0.25, seed=3)
    assert len(train) + len(evals) == len(recs)
    norm = lambda r: " ".join(r["question"].lower().replace("?", "").split())
    assert not {norm(r) for r in train} & {norm(r) for r in evals}
    assert 4 <= sum(r["objective"] == "forget" for r in evals) <= 6
    assert 2 <= sum(r["objective"] == "retain" for r in evals) <= 3
    side = {r["id"]: "t" for r in train} | {r["id"]: "e" for r in evals}
    assert all(side[t["id"]] == side[t["anchor_of"]] for t in twins)
    assert split_records(recs, 0.25, seed=3) == (train, evals)
    assert split_records(recs, 0.25, seed=4) != (train, evals)
    assert parse_split("eval=0.2") == 0.2
    with pytest.raises(MuleError):
        parse_split("eval=1.5")


def test_cli_split_writes_two_files_with_anchors_inside_each(tmp_path):
    fq = write_jsonl(tmp_path / "f.jsonl", [{"question": f"Which spell number {i} does Harry cast?", "answer": f"Spell {i}"}
                                            for i in range(10)])
    rq = write_jsonl(tmp_path / "r.jsonl", [{"question": f"Which river number {i} is longest?", "answer": f"River {i}"}
                                            for i in range(10)])
    out = tmp_path / "data.jsonl"
    res = run(["standardize", str(fq), str(rq), "--objective", f"{rq}=retain", "--generator", "none", "--split",
               "eval=0.2", "--seed", "1", "-q", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert not out.exists()
    train, evals = read_records(tmp_path / "data.train.jsonl"), read_records(tmp_path / "data.eval.jsonl")
    assert len(evals) == 4 and len(train) == 16
    assert not {r["question"] for r in train} & {r["question"] for r in evals}
    for side in (train, evals):
        ids = {r["id"] for r in side}
        assert all(r["anchor_of"] in ids for r in side if r["objective"] == "forget")
    # train to stdout, eval to a file: the pipe form
    res = run(["standardize", str(fq), "--generator", "none", "--split", "eval=0.2", "--eval-out",
               str(tmp_path / "e.jsonl"), "-q"])
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 8
    res = CliRunner().invoke(cli, ["standardize", str(fq), "--generator", "none", "--split", "eval=0.2"])
    assert res.exit_code == 2 and "--eval-out" in res.output


def test_neighbors_without_a_generator_is_a_clear_error(tmp_path):
    f = write_jsonl(tmp_path / "f.jsonl", [{"question": "q?", "answer": "a"}])
    res = CliRunner().invoke(cli, ["standardize", str(f), "--generator", "none", "--target", "HP", "--neighbors", "3"])
    assert res.exit_code == 2 and "--neighbor-corpus" in res.output


def test_neighbor_corpus_becomes_neighbor_records_with_mcq(tmp_path):
    f = write_jsonl(tmp_path / "f.jsonl", [{"question": "Who wrote Harry Potter?", "answer": "J. K. Rowling"}])
    nb = tmp_path / "nb.csv"
    nb.write_text("question,answer\nWho wrote The Hobbit?,J. R. R. Tolkien\nWho wrote Narnia?,C. S. Lewis\n")
    recs = _std([f], neighbor_corpus=[str(nb)], mcq=True, target="Harry Potter").train
    nbr = [r for r in recs if r["objective"] == "neighbor"]
    assert len(nbr) == 2 and all("I do not know." in r["choices"] for r in nbr)
    forget = next(r for r in recs if r["objective"] == "forget")
    assert forget["domain"] == "Harry Potter" and forget["anchor_of"] in {r["id"] for r in nbr}


def test_unified_records_keep_their_objective_unless_their_path_is_mapped(tmp_path):
    u = write_jsonl(tmp_path / "u.jsonl", [{"id": "r9", "objective": "retain", "question": "Q?", "answer": "A"}])
    raw = write_jsonl(tmp_path / "raw.jsonl", [{"question": "Who wrote Harry Potter?", "answer": "J. K. Rowling"}])
    recs = _std([u, raw], objectives=["forget"]).train
    assert {r["id"]: r["objective"] for r in recs} == {"r9": "retain", "forget-0001": "forget"}
    recs = _std([u, raw], objectives=["forget", f"{u}=neighbor"]).train
    assert {r["id"]: r["objective"] for r in recs} == {"r9": "neighbor", "forget-0001": "forget"}


def test_format_override(tmp_path):
    p = tmp_path / "data.txt"
    p.write_text('{"question": "Capital of Spain?", "answer": "Madrid"}\n')
    auto = load_inputs([str(p)])  # .txt -> a passage by default
    assert len(auto.passages) == 1 and not auto.items
    recs = _std([p], fmt="jsonl").train
    assert [(r["question"], r["answer"]) for r in recs] == [("Capital of Spain?", "Madrid")]
    with pytest.raises(MuleError, match="data.txt: line 1: --format mcq"):
        _std([p], fmt="mcq")
