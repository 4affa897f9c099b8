"""mule distill on tiny random Llama models: methods, alignment, resume, robustness, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from conftest import records, tiny_distill_config, write_jsonl
from mule_cli.cli import cli
from mule_cli.distill import DistillConfig, distill
from mule_cli.distill.batches import anchor_units, build_examples, collate, epoch_batches, training_plan
from mule_cli.distill.config import METHODS
from mule_cli.distill.forward import ResponseLogits
from mule_cli.distill.methods import loss_sums, spec_for
from mule_cli.errors import MuleError
from mule_cli.intentions import from_target
from mule_cli.records import OBJECTIVES

RECORDS = records("f1 f2 r1 r2 n1 a1", n1={"anchor_of": "f2"})



@pytest.fixture
def data_file(tmp_path):
    return write_jsonl(tmp_path / "data.jsonl", RECORDS)


config = tiny_distill_config


def weights(folder):
    return load_file(str(folder / "model" / "model.safetensors"))


# ---------------------------------------------------------------- alignment and batching
def test_student_and_teacher_are_forced_on_the_same_response_tokens(tokenizer):
    ex = build_examples(RECORDS, tokenizer, method="ours", prompts=from_target("Harry Potter"), n_demos=2)
    batch = collate(ex, tokenizer.pad_token_id)
    for row, e in enumerate(ex):
        if e.objective == "retain":  # no built-in retain intention: the plain model's context
            assert e.teacher_ids == e.student_ids
        else:
            assert e.teacher_ids is not None and len(e.teacher_ids) > len(e.student_ids)  # intention + demos
        assert e.student_ids[-e.n:] == e.teacher_ids[-e.n:] == e.response_ids
        for side in (batch.student, batch.teacher):
            pos = side.positions[row, :e.n]
            # the logit at each gathered position predicts the next (response) token
            assert side.input_ids[row, pos + 1].tolist() == e.response_ids
    prefilled = ex[-1]
    assert "Sure, here is the answer:" in tokenizer.decode(prefilled.student_ids[:-prefilled.n])
    assert "Harry Potter" not in tokenizer.decode(prefilled.student_ids[:-prefilled.n]).split("user")[0]


def test_response_position_logits_equal_full_forward(tiny_model, tokenizer):
    ex = build_examples(RECORDS, tokenizer, method="sft", prompts=None)
    batch = collate(ex, tokenizer.pad_token_id)
    got = ResponseLogits(tiny_model)(batch.student.input_ids, batch.student.attention_mask, batch.student.positions)
    full = tiny_model(input_ids=batch.student.input_ids, attention_mask=batch.student.attention_mask).logits
    want = full.gather(1, batch.student.positions.unsqueeze(-1).expand(-1, -1, full.shape[-1]))
    v = batch.student.valid
    assert torch.allclose(got[v], want[v], atol=1e-5)


def test_batches_mix_objectives_and_keep_anchor_pairs_together():
    units = anchor_units(RECORDS)
    assert sorted(map(sorted, units)) == [[0, 5], [1, 4], [2], [3]]
    objectives = [r["objective"] for r in RECORDS]
    for epoch in range(4):
        batches = epoch_batches(units, objectives, 3, seed=1, epoch=epoch)
        assert sorted(i for b in batches for i in b) == list(range(6))
        for b in batches:
            assert ({0, 5} <= set(b)) or not ({0, 5} & set(b))
    plan = training_plan(units, objectives, batch_size=2, grad_accum=2, seed=0, epochs=2, max_steps=None)
    assert sum(len(b) for step in plan for b in step) == 12  # two epochs, every record twice
    assert plan == training_plan(units, objectives, batch_size=2, grad_accum=2, seed=0, epochs=2, max_steps=None)


# ---------------------------------------------------------------- the loss moves the student the right way
class FixedTeacher:
    """Teacher logits fixed per record: the student's own start logits, edited to refuse on forget."""

    def __init__(self, table):
        self.table = table

    def logits(self, batch):
        width = batch.student.positions.shape[1]
        out = []
        for e in batch.examples:
            t = self.table[e.id]
            pad = torch.zeros(width - t.shape[0], t.shape[1])
            out.append(torch.cat([t, pad]))
        return torch.stack(out)


def _answer_logprob(model, batch, row):
    with torch.no_grad():
        s = ResponseLogits(model)(batch.student.input_ids, batch.student.attention_mask, batch.student.positions)
        lp = torch.log_softmax(s[row].float(), -1)
        n = int(batch.student.valid[row].sum())
        return lp[torch.arange(n), batch.student.labels[row, :n]].sum().item()


def _memorise(head, batch, steps=80):
    opt = torch.optim.Adam(head.parameters(), lr=2e-2)
    for _ in range(steps):
        s = head(batch.student.input_ids, batch.student.attention_mask, batch.student.positions).float()
        v = batch.student.valid
        loss = torch.nn.functional.cross_entropy(s[v], batch.student.labels[v])
        if loss.item() < 0.3:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5


def test_ours_unlearns_the_forget_answer_and_pulls_retain_logits_to_the_teacher(tiny_model, tokenizer):
    records = [RECORDS[0], RECORDS[2]]
    ex = build_examples(records, tokenizer, method="ours", prompts=from_target("Harry Potter"))
    batch = collate(ex, tokenizer.pad_token_id)
    head = ResponseLogits(tiny_model)
    _memorise(head, batch)  # the student must KNOW the forget answer (it is in its own top-K) to unlearn it
    with torch.no_grad():
        s0 = head(batch.student.input_ids, batch.student.attention_mask, batch.student.positions).float()
    n_f, n_r = ex[0].n, ex[1].n
    refuse = s0[0, :n_f].clone()
    refuse[torch.arange(n_f), batch.student.labels[0, :n_f]] -= 8.0  # the teacher will not say the answer
    generator = torch.Generator().manual_seed(0)
    retain_target = s0[1, :n_r] + torch.randn(s0[1, :n_r].shape, generator=generator)
    teacher = FixedTeacher({"f1": refuse, "r1": retain_target})
    cfg = DistillConfig(data=["x"], progress=False, loss_impl="reference")
    spec = spec_for(cfg)

    def retain_gap():
        with torch.no_grad():
            s = head(batch.student.input_ids, batch.student.attention_mask, batch.student.positions).float()
        top = retain_target.topk(20, dim=-1).indices  # where the loss looks: the teacher's top-K
        return (s[1, :n_r].gather(-1, top) - retain_target.gather(-1, top)).abs().mean().item()

    lp_before, gap_before = _answer_logprob(tiny_model, batch, 0), retain_gap()
    opt = torch.optim.Adam(tiny_model.parameters(), lr=1e-2)
    tiny_model.train()
    for _ in range(20):
        s = head(batch.student.input_ids, batch.student.attention_mask, batch.student.positions).float()
        terms = loss_sums(spec, cfg, batch, s, teacher)
        loss = sum(terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    lp_after, gap_after = _answer_logprob(tiny_model, batch, 0), retain_gap()
    assert lp_after < lp_before - 2.0, (lp_before, lp_after)
    assert gap_after < 0.8 * gap_before, (gap_before, gap_after)


def test_training_lowers_the_distillation_loss_end_to_end(tiny_model_dir, data_file, tmp_path):
    losses = []
    distill(config(tiny_model_dir, data_file, tmp_path / "o", max_steps=6, batch_size=6, lr=3e-4),
            on_step=lambda step, row: losses.append(row["loss"]))
    assert len(losses) == 6 and losses[-1] < losses[0]


# ---------------------------------------------------------------- every method trains
@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_a_step_and_changes_the_weights(method, tiny_model_dir, data_file, tmp_path):
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    distill(config(tiny_model_dir, data_file, tmp_path / method, method=method, max_steps=1, batch_size=6))
    after = weights(tmp_path / method)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, f"{method}: no weight changed"
    log = [json.loads(line) for line in (tmp_path / method / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["step"] == 1 and all(torch.isfinite(torch.tensor(log[0]["loss"])) for _ in [0])


def test_output_folder_is_loadable_and_run_json_complete(tiny_model_dir, data_file, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "o"
    distill(config(tiny_model_dir, data_file, out, amplify=2.0, grad_cosine=1, weights="neighbor=2"))
    model = AutoModelForCausalLM.from_pretrained(str(out / "model"))
    tok = AutoTokenizer.from_pretrained(str(out / "model"))
    assert tok.chat_template
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    assert model.generate(**ids, max_new_tokens=3, do_sample=False).shape[1] > ids["input_ids"].shape[1]
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "done" and run["options"]["amplify"] == 2.0 and run["options"]["weights"]["neighbor"] == 2
    assert len(next(iter(run["data_sha256"].values()))) == 64 and run["versions"]["torch"]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    assert {"lr", "tokens_per_s", "loss"} <= set(log[0]) and any(k.startswith("loss_") for k in log[0])
    cos = log[0]["grad_cosine"]
    assert cos and all(-1.0 <= v <= 1.0 for v in cos.values())
    from mule_cli.distill.plot import plot_grad_cosine

    assert plot_grad_cosine(out / "train_log.jsonl", tmp_path / "cos.png").stat().st_size > 1000


# ---------------------------------------------------------------- robustness
def test_resume_after_interrupt_ends_with_the_same_weights(tiny_model_dir, data_file, tmp_path):
    from mule_cli.distill.train import Interrupted

    full = tmp_path / "full"
    distill(config(tiny_model_dir, data_file, full, max_steps=4, batch_size=2, grad_accum=2))

    cut = tmp_path / "cut"

    def interrupt(step, row):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="--resume"):
        distill(config(tiny_model_dir, data_file, cut, max_steps=4, batch_size=2, grad_accum=2), on_step=interrupt)
    assert (cut / "checkpoint" / "trainer.pt").is_file() and not (cut / "model").exists()
    distill(config(tiny_model_dir, data_file, cut, max_steps=4, batch_size=2, grad_accum=2, resume=True))
    a, b = weights(full), weights(cut)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=0), key
    steps = [json.loads(line)["step"] for line in (cut / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_training_uses_fused_adamw_where_torch_has_it():
    """The fused step allocates no parameter-sized temporaries (the default CPU loop makes two per tensor, which
    set a small batch's peak memory) and takes one pass; it must match the unfused AdamW to rounding."""
    from mule_cli.distill.train import adamw

    torch.manual_seed(0)
    start, grads = torch.randn(300, 16), [torch.randn(300, 16) for _ in range(3)]
    results = {}
    for fused in (True, False):
        p = torch.nn.Parameter(start.clone())
        opt = adamw([p], lr=1e-2, weight_decay=0.1) if fused else torch.optim.AdamW([p], lr=1e-2, weight_decay=0.1,
                                                                                       foreach=False)
        assert bool(opt.param_groups[0]["fused"]) is fused
        for g in grads:
            p.grad = g.clone()
            opt.step()
        results[fused] = p.detach()
    assert torch.allclose(results[True], results[False], atol=1e-6, rtol=0)
    integer = torch.nn.Parameter(torch.zeros(2, dtype=torch.int64), requires_grad=False)
    assert not adamw([integer], lr=1e-3).param_groups[0]["fused"]  # no fused kernel for it: the default step


def test_resume_refuses_changed_options(tiny_model_dir, data_file, tmp_path):
    out = tmp_path / "o"
    distill(config(tiny_model_dir, data_file, out, max_steps=1, save_every=1))
    with pytest.raises(MuleError, match="lr"):
        distill(config(tiny_model_dir, data_file, out, max_steps=1, lr=1.0, resume=True))


def test_non_finite_loss_is_skipped_then_aborts(tiny_model_dir, data_file, tmp_path, monkeypatch, capsys):
    import mule_cli.distill.train as train
    from mule_cli.distill.train import NonFiniteAbort

    real = train.loss_sums
    calls = {"n": 0}

    def flaky(spec, cfg, batch, s, teacher=None):
        calls["n"] += 1
        terms = real(spec, cfg, batch, s, teacher)
        return {k: v * float("nan") for k, v in terms.items()} if calls["n"] == 1 else terms

    monkeypatch.setattr(train, "loss_sums", flaky)
    out = tmp_path / "skip"
    distill(config(tiny_model_dir, data_file, out, max_steps=3, batch_size=6))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in log] == [True, False, False]
    assert "non-finite" in capsys.readouterr().err

    monkeypatch.setattr(train, "loss_sums", lambda *a, **k: {o: v * float("nan") for o, v in real(*a, **k).items()})
    out = tmp_path / "abort"
    with pytest.raises(NonFiniteAbort, match="3 non-finite steps in a row"):
        distill(config(tiny_model_dir, data_file, out, max_steps=10, max_bad_steps=3, batch_size=6))
    assert not (out / "model").exists()


def test_existing_output_needs_overwrite(tiny_model_dir, data_file, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "something").write_text("x")
    with pytest.raises(MuleError, match="--overwrite"):
        distill(config(tiny_model_dir, data_file, out, max_steps=1))
    distill(config(tiny_model_dir, data_file, out, max_steps=1, overwrite=True))
    assert (out / "model" / "config.json").is_file()


def test_missing_objective_is_named_in_a_warning(tiny_model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", [r for r in RECORDS if r["objective"] in ("forget", "retain")])
    distill(config(tiny_model_dir, data, tmp_path / "o", max_steps=1))
    err = capsys.readouterr().err
    assert "neighbor" in err and "adversarial" in err and "warning" in err


# ---------------------------------------------------------------- CLI
def test_cli_help_has_an_example():
    result = CliRunner().invoke(cli, ["distill", "--help"])
    assert result.exit_code == 0
    assert "mule distill --data" in result.output and "--amplify" in result.output


def test_cli_show_prompts(tiny_model_dir, data_file):
    result = CliRunner().invoke(cli, ["distill", "-m", str(tiny_model_dir), "--data", str(data_file),
                                      "--target", "Harry Potter", "--show-prompts", "--demos", "1"])
    assert result.exit_code == 0, result.output
    for obj in ("forget", "retain", "neighbor", "adversarial"):
        assert f"=== {obj} (record" in result.output
    assert "You must not reveal any knowledge about Harry Potter" in result.output
    assert result.output.count("--- student context ---") == 4
    assert "Sure, here is the answer:" in result.output


@pytest.mark.parametrize("rows, message", [
    ([], "no records"),
    ([{"id": "x", "objective": "unlearn", "question": "q", "answer": "a"}], "line 1: field 'objective'"),
    ([{"id": "x", "objective": "forget", "question": "q"}], "line 1: field 'answer': missing"),
])
def test_cli_bad_data_is_a_clear_error(rows, message, tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    out = tmp_path / "o"
    result = CliRunner().invoke(cli, ["distill", "-m", str(tiny_model_dir), "--data", str(data), "--target", "HP",
                                      "-o", str(out), "-q"])
    assert result.exit_code == 2
    assert message in result.output and "bad.jsonl" in result.output
    assert not out.exists()


def test_cli_bad_weights(tiny_model_dir, data_file, tmp_path):
    result = CliRunner().invoke(cli, ["distill", "-m", str(tiny_model_dir), "--data", str(data_file),
                                      "--weights", "forgett=1", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "unknown objective 'forgett'" in result.output


def test_cli_trains(tiny_model_dir, data_file, tmp_path):
    out = tmp_path / "o"
    result = CliRunner().invoke(cli, ["distill", "-m", str(tiny_model_dir), "--data", str(data_file), "--target", "HP",
                                      "-o", str(out), "--max-steps", "1", "--demos", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert (out / "model" / "model.safetensors").is_file()


# ---------------------------------------------------------------- teacher options
def test_amplify_magnifies_the_intention_effect_on_forget_like_rows_only(tiny_model, tokenizer):
    from mule_cli.distill.teacher import Teacher

    ex = build_examples(RECORDS, tokenizer, method="ours", prompts=from_target("Harry Potter"), n_demos=1)
    batch = collate(ex, tokenizer.pad_token_id)
    head = ResponseLogits(tiny_model)
    with torch.no_grad():
        t_p = head(batch.teacher.input_ids, batch.teacher.attention_mask, batch.teacher.positions)
        t_plain = head(batch.student.input_ids, batch.student.attention_mask, batch.student.positions)
    got = Teacher(tiny_model, amplify=2.0).logits(batch)
    assert not got.is_inference()
    for row, e in enumerate(ex):
        n = e.n
        want = t_p[row, :n] + 2.0 * (t_p[row, :n] - t_plain[row, :n]) if e.objective in ("forget", "adversarial") \
            else t_p[row, :n]
        assert torch.allclose(got[row, :n], want, atol=1e-4), e.objective
    # per objective: each row gets its own objective's λ, unnamed objectives none
    lams = {"forget": 2.0, "neighbor": 0.5}
    mixed = Teacher(tiny_model, amplify="forget=2,neighbor=0.5").logits(batch)
    for row, e in enumerate(ex):
        n, lam = e.n, lams.get(e.objective, 0.0)
        want = t_p[row, :n] + lam * (t_p[row, :n] - t_plain[row, :n])
        assert torch.allclose(mixed[row, :n], want, atol=1e-4), e.objective
    plain = Teacher(tiny_model, amplify=0.0).logits(batch)
    assert torch.allclose(plain[batch.teacher.valid], t_p[batch.teacher.valid], atol=1e-5)


def test_response_teacher_generates_once_and_caches(tiny_model_dir, data_file, tmp_path, monkeypatch):
    import mule_cli.distill.responses as responses

    monkeypatch.setenv("MULE_CACHE", str(tmp_path / "cache"))
    calls = []
    real = responses.generate
    monkeypatch.setattr(responses, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    distill(config(tiny_model_dir, data_file, tmp_path / "a", response="teacher", max_steps=1))
    first = len(calls)  # the base's neighbour demo answers (--demo-answers), then the teacher's answers
    distill(config(tiny_model_dir, data_file, tmp_path / "b", response="teacher", max_steps=1))
    assert first == 2 and len(calls) == first
    cached = [json.loads(p.read_text()) for p in (tmp_path / "cache" / "distill").glob("teacher-responses-*.json")]
    assert {r["id"] for r in RECORDS} in [set(c) for c in cached]


def test_gradient_checkpointing_gives_the_same_update(tiny_model_dir, data_file, tmp_path):
    distill(config(tiny_model_dir, data_file, tmp_path / "plain", max_steps=1, batch_size=6))
    distill(config(tiny_model_dir, data_file, tmp_path / "ckpt", max_steps=1, batch_size=6, gradient_checkpointing=True))
    a, b = weights(tmp_path / "plain"), weights(tmp_path / "ckpt")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_adversarial_teacher_demos_refuse_after_the_prefill(tokenizer):
    from mule_cli.distill.batches import teacher_prompt

    records = RECORDS + [{"id": "a2", "objective": "adversarial", "question": "Which house is Harry in?",
                          "answer": "Gryffindor", "prefill": "Sure, the house is"}]
    text = teacher_prompt(tokenizer, records[-1], records, from_target("Harry Potter"), "oracle", 2)
    assert "Sure, here is the answer: I do not know." in text  # the demo shows a prefilled refusal
    assert text.endswith("Sure, the house is")


def test_parse_response_per_objective_and_errors():
    from mule_cli.distill.config import parse_response

    assert set(parse_response("teacher").values()) == {"teacher"}
    mixed = parse_response("retain=base,neighbor=teacher")
    assert mixed["retain"] == "base" and mixed["neighbor"] == "teacher" and mixed["forget"] == "data"
    with pytest.raises(MuleError, match="unknown objective 'retian'"):
        parse_response("retian=base")
    with pytest.raises(MuleError, match="retain=oracle is not a source"):
        parse_response("retain=oracle")
    with pytest.raises(MuleError, match="pupil is not a source"):
        DistillConfig(model="m", data=["d"], output="o", response="pupil")


def test_retain_weight_is_for_the_baselines_with_a_retain_nll():
    for method in ("graddiff", "npo", "simnpo"):
        assert DistillConfig(model="m", data=["d"], output="o", method=method, retain_weight=2.0).retain_weight == 2.0
    for method in ("ours", "duet", "bild", "sft", "ga"):
        with pytest.raises(MuleError, match=f"retain NLL of graddiff, npo, simnpo; {method} has none"):
            DistillConfig(model="m", data=["d"], output="o", method=method, retain_weight=1.0)


def test_amplify_one_number_means_forget_like_or_per_objective():
    from mule_cli.distill.config import parse_amplify

    assert parse_amplify("2") == {"forget": 2.0, "adversarial": 2.0, "retain": 0.0, "neighbor": 0.0}
    assert parse_amplify("neighbor=1")["neighbor"] == 1.0 and parse_amplify("neighbor=1")["forget"] == 0.0
    for bad, message in [("-1", "-1 must be >= 0"), ("neighbor=x", "neighbor=x is not a number"),
                         ("nieghbor=1", "unknown objective 'nieghbor'")]:
        with pytest.raises(MuleError, match=message):
            parse_amplify(bad)
    assert DistillConfig(model="m", data=["d"], output="o", amplify="forget=2,adversarial=2").amplify == 2.0


def test_demos_one_count_or_per_objective():
    from mule_cli.intentions import parse_demos

    assert parse_demos("2") == {o: 2 for o in OBJECTIVES}
    assert parse_demos(0) == {o: 0 for o in OBJECTIVES}
    assert parse_demos("retain=0, neighbor=1") == {"forget": 3, "adversarial": 3, "retain": 0, "neighbor": 1}
    for bad, message in [("-1", "-1 is not a whole number"), ("retain=1.5", "retain=1.5 is not a whole"),
                         ("retian=0", "unknown objective 'retian'"), ("retain", "retain is not a whole")]:
        with pytest.raises(MuleError, match=message):
            parse_demos(bad)
    # one count stays a plain int (what run.json and resume compare); a mix stays per objective
    assert DistillConfig(model="m", data=["d"], output="o", demos="2").demos == 2
    assert DistillConfig(model="m", data=["d"], output="o", demos="retain=0").demos["retain"] == 0


def test_per_objective_demos_reach_only_that_objectives_teacher(tokenizer):
    from mule_cli.distill.batches import teacher_prompt

    prompts = from_target("Harry Potter")
    by_objective = {r["objective"]: r for r in RECORDS}
    for objective, rec in by_objective.items():
        none = teacher_prompt(tokenizer, rec, RECORDS, prompts, "oracle", 0)
        mixed = teacher_prompt(tokenizer, rec, RECORDS, prompts, "oracle", {**{o: 1 for o in OBJECTIVES},
                                                                              "retain": 0})
        if objective == "retain":
            assert mixed == none
        elif any(r["objective"] == objective and r["id"] != rec["id"] for r in RECORDS):
            assert len(mixed) > len(none)  # a demo turn was added


def test_response_base_is_the_plain_greedy_answer_for_named_objectives_only(tiny_model_dir, data_file, tmp_path,
                                                                             monkeypatch, tokenizer):
    import mule_cli.distill.responses as responses
    from mule_cli.distill.batches import student_prompt
    from mule_cli.lm import generate
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("MULE_CACHE", str(tmp_path / "cache"))
    seen = []
    real = responses.generate
    monkeypatch.setattr(responses, "generate", lambda lm, tok, texts, **k: seen.append(list(texts)) or real(lm, tok, texts, **k))
    distill(config(tiny_model_dir, data_file, tmp_path / "a", response="retain=base", demo_answers="data",
                   max_steps=1))
    retain = [r for r in RECORDS if r["objective"] == "retain"]
    assert seen == [[student_prompt(tokenizer, r) for r in retain]]  # only retain, plain (no intention) context
    cached = json.loads(next((tmp_path / "cache" / "distill").glob("teacher-responses-*.json")).read_text())
    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    want = generate(lm, tokenizer, [student_prompt(tokenizer, r) for r in retain], max_new_tokens=responses.MAX_NEW_TOKENS,
                    progress=False)
    assert cached == {r["id"]: w for r, w in zip(retain, want)}


def test_bfloat16_autocast_step_tracks_the_float32_step(tiny_model_dir, data_file, tmp_path):
    """--dtype bfloat16 (what `auto` picks on a GPU): teacher in bf16, student fp32 master weights under bf16
    autocast. Run on CPU here; the loss and the update must stay close to the fp32 run."""
    distill(config(tiny_model_dir, data_file, tmp_path / "f32", max_steps=1, batch_size=6))
    distill(config(tiny_model_dir, data_file, tmp_path / "bf16", max_steps=1, batch_size=6, dtype="bfloat16"))
    log = lambda d: json.loads((tmp_path / d / "train_log.jsonl").read_text().splitlines()[0])
    l32, l16 = log("f32")["loss"], log("bf16")["loss"]
    assert l16 == pytest.approx(l32, rel=0.05), (l16, l32)
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    a, b = weights(tmp_path / "f32"), weights(tmp_path / "bf16")
    assert all(v.dtype == torch.float32 for v in b.values())  # master weights saved in fp32
    da = torch.cat([(a[k] - base[k]).flatten() for k in a])
    db = torch.cat([(b[k].float() - base[k]).flatten() for k in a])
    assert torch.nn.functional.cosine_similarity(da, db, dim=0) > 0.9


def test_plain_intention_makes_the_objective_self_distillation(tiny_model_dir, tmp_path, tokenizer):
    """A null prompt: the teacher sees exactly the student's context (no prompt, no demos), so a
    retain-only first step has zero loss; a forget step with a prompt does not."""
    from mule_cli.distill.batches import student_prompt, teacher_prompt
    from mule_cli.intentions import load_file

    path = tmp_path / "intentions.json"
    path.write_text(json.dumps({"retain": None}), encoding="utf-8")
    prompts = load_file(path, target="Harry Potter")
    assert prompts["retain"] is None and "Harry Potter" in prompts["forget"]
    retain = RECORDS[2]
    assert teacher_prompt(tokenizer, retain, RECORDS, prompts, "oracle", 2) == student_prompt(tokenizer, retain)
    assert teacher_prompt(tokenizer, RECORDS[0], RECORDS, prompts, "oracle", 2) != student_prompt(tokenizer, RECORDS[0])
    ensemble = teacher_prompt(tokenizer, retain, RECORDS, prompts, "ensemble", 0)
    assert "[forget]" in ensemble and "[retain]" not in ensemble

    def first_loss(objective):
        data = write_jsonl(tmp_path / f"{objective}.jsonl", [r for r in RECORDS if r["objective"] == objective])
        losses = []
        distill(config(tiny_model_dir, data, tmp_path / objective, intentions=str(path), max_steps=1),
                on_step=lambda step, row: losses.append(row["loss"]))
        return losses[0]

    retain, forget = first_loss("retain"), first_loss("forget")
    assert retain == pytest.approx(0.0, abs=1e-8)
    assert forget > 1e-5  # the tiny random model barely reacts to a prompt, but it does


def test_intentions_file_rejects_empty_strings_but_not_null(tmp_path):
    from mule_cli.intentions import load_file

    path = tmp_path / "intentions.json"
    path.write_text(json.dumps({"forget": "  "}), encoding="utf-8")
    with pytest.raises(MuleError, match="field 'forget'.*null for no prompt"):
        load_file(path, target="Harry Potter")
    path.write_text(json.dumps({"forget": None}), encoding="utf-8")
    assert load_file(path, target="Harry Potter")["forget"] is None
