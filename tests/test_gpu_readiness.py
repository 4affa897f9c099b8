"""First contact with a GPU, checked on the CPU: the failures a GPU run would hit before its first step ends.

Collectives get tensors on the process group's device (NCCL has no CPU backend); the CUDA dispatch
traces under torch.compile(fullgraph=True); a failed CUDA build says why, once; the extension cache key
follows the GPU architectures and nvcc; bf16 training hands the kernel bf16 logits; the fused op and
the reference agree on mixed student/teacher dtypes.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as tdist
import torch.utils.cpp_extension

import mule_cli.kernels as kernels
from conftest import tiny_distill_config, write_jsonl
from mule_cli.distill import distill
from mule_cli.distill import distributed as D
from mule_cli.distill import train
from mule_cli.kernels import backend, build, chunked, reference_loss, topk_union_smooth_l1_loss
from mule_cli.kernels.op import topk_union_smooth_l1
from test_distill import RECORDS


@pytest.fixture
def fused_cpu():
    if backend("cpu") != "fused-cpu":
        pytest.fail(f"the fused CPU extension did not build: {build._state.get('error')}")


@pytest.fixture
def recorded_all_reduce(monkeypatch):
    """Every tensor handed to torch.distributed.all_reduce, which does nothing else (a sum over one rank)."""
    seen = []
    monkeypatch.setattr(tdist, "all_reduce", lambda tensor, *args, **kwargs: seen.append(tensor))
    return seen


@pytest.fixture
def torchrun_rank(monkeypatch):
    """D.init as on rank 0 of two under torchrun, the process group already up (none is created here)."""
    for key, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(tdist, "is_initialized", lambda: True)


# ---------------------------------------------------------------- 1. collectives on the group's device
def test_step_statistics_are_reduced_as_float64_on_the_group_device(torchrun_rank, recorded_all_reduce):
    dist = D.init("cpu")  # gloo
    assert D.sum_over_ranks(dist, [1.5, 2.0, 0.0]) == [1.5, 2.0, 0.0]
    [tensor] = recorded_all_reduce
    assert tensor.device == torch.device("cpu") and tensor.dtype == torch.float64


def test_a_cpu_tensor_handed_to_a_gpu_group_is_caught_before_the_collective(torchrun_rank, recorded_all_reduce):
    dist = D.init("cuda")  # NCCL: it has no CPU backend
    assert D.device_for(dist, "cuda") == "cuda:1"
    with pytest.raises(RuntimeError, match=r"a cpu tensor .* on cuda:1"):
        D.all_reduce_sum(dist, torch.zeros(3, dtype=torch.float64))
    assert recorded_all_reduce == []


def test_training_hands_collectives_tensors_on_the_model_device(tiny_model_dir, tmp_path, monkeypatch,
                                                               recorded_all_reduce):
    """A real one-process gloo group; every tensor a step reduces must sit where the model does."""
    tdist.init_process_group("gloo", store=tdist.HashStore(), rank=0, world_size=1)  # distill destroys it
    monkeypatch.setattr(D, "init", lambda device: D.Dist(rank=0, world=1, local_rank=0, enabled=True, device="cpu"))
    model_device = []
    real_wrap = D.wrap

    def wrap(module, dist, **kwargs):
        model_device.append(next(module.parameters()).device)
        return real_wrap(module, dist, **kwargs)

    monkeypatch.setattr(D, "wrap", wrap)
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    distill(tiny_distill_config(tiny_model_dir, data, tmp_path / "o"))
    assert not tdist.is_initialized()
    assert len(recorded_all_reduce) == 2  # one per step (max_steps=2)
    assert {t.device for t in recorded_all_reduce} == set(model_device)


# ---------------------------------------------------------------- 2. torch.compile over the CUDA dispatch
def _no_fallback(*args, **kwargs):
    raise AssertionError("the reference ran: the CUDA branch of the dispatch was not the one compiled")


def test_cuda_dispatch_compiles_with_fullgraph(fused_cpu, monkeypatch):
    """The branch CUDA logits take, traced on CPU: the tensors are called CUDA tensors and the loaded
    (pybind) extension is said to have a CUDA kernel; the op itself still runs its CPU kernel. Any pybind
    call left in the traced code breaks the graph, which fullgraph=True turns into an error."""
    monkeypatch.setattr(kernels, "_device_type", lambda t: "cuda")
    monkeypatch.setattr(build, "loaded_kernels", lambda: ("cpu", "cuda"))
    monkeypatch.setattr(kernels, "reference_loss", _no_fallback)
    s = torch.randn(4, 64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    t = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    torch._dynamo.reset()
    try:
        fn = torch.compile(lambda a, b: topk_union_smooth_l1_loss(a, b, k=4), fullgraph=True, backend="aot_eager")
        loss = fn(s, t)
        loss.backward()
    finally:
        torch._dynamo.reset()
    monkeypatch.undo()
    s2 = s.detach().clone().requires_grad_(True)
    ref = reference_loss(s2, t, k=4)
    ref.backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(s.grad, s2.grad)


# ---------------------------------------------------------------- 3. a failed CUDA build says why, once
NVCC_ERROR = 'csrc/topk_union_loss.cu(42): error: expected a ";"'


def _torch_build_error() -> RuntimeError:
    """What torch.utils.cpp_extension.load raises when ninja fails: the whole log in the message."""
    log = [f"[{i}/60] /usr/local/cuda/bin/nvcc --generate-dependencies-with-compile -c file{i}.cu " + "-I x " * 80
           for i in range(1, 58)]
    log += ["FAILED: topk_union_loss.cuda.o", NVCC_ERROR,
            '1 error detected in the compilation of "csrc/topk_union_loss.cu".',
            "ninja: build stopped: subcommand failed."]
    return RuntimeError("Error building extension 'mule_topk_union_cuda': " + "\n".join(log))


def test_failed_cuda_build_is_printed_once_and_kept_for_backend(monkeypatch, capsys):
    built = []

    def fake_build(with_cuda):
        built.append(with_cuda)
        if with_cuda:
            raise _torch_build_error()
        return type("CpuOnlyExtension", (), {"has_cuda": staticmethod(lambda: False)})

    build.reset()
    monkeypatch.setattr(torch.version, "cuda", "12.4")  # as with a CUDA torch and a toolkit
    monkeypatch.setattr(torch.utils.cpp_extension, "CUDA_HOME", "/usr/local/cuda")
    monkeypatch.delenv("MULE_KERNELS_NO_CUDA", raising=False)
    monkeypatch.setattr(build, "_build", fake_build)
    try:
        first, second = backend("cuda"), backend("cuda")
        assert backend("cpu") == "fused-cpu"
        err = capsys.readouterr().err
    finally:
        monkeypatch.undo()
        build.reset()
    assert built == [True, False]  # tried once, then CPU-only
    assert first == second == "reference"
    assert err.count("did not build") == 1 and err.count(NVCC_ERROR) == 1
    assert len(err.splitlines()) < 40  # the tail of the log, not 60 compile commands
    assert NVCC_ERROR in first.reason and "Error building extension" in first.reason


# ---------------------------------------------------------------- 4. the cache key
def _all_sources():
    root = build.csrc_dir()
    return [root / n for n in build.CPU_SOURCES + build.CUDA_SOURCES + build.HEADERS]


def test_cuda_cache_key_follows_the_arch_list(monkeypatch):
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0")
    a80, cpu = build.build_dir(True, _all_sources()), build.build_dir(False, _all_sources())
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0+PTX")
    assert build.build_dir(True, _all_sources()) != a80
    assert build.build_dir(False, _all_sources()) == cpu  # the CPU build does not depend on it


def test_cuda_cache_key_follows_the_nvcc_version(monkeypatch, tmp_path):
    nvcc = tmp_path / "bin" / "nvcc"  # a stand-in toolkit: its nvcc only tells its version
    nvcc.parent.mkdir()
    monkeypatch.setattr(torch.utils.cpp_extension, "CUDA_HOME", str(tmp_path))
    monkeypatch.delenv("PYTORCH_NVCC", raising=False)
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    keys = []
    for release in ("12.4", "13.0"):
        nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}'\n")
        nvcc.chmod(0o755)
        keys.append((build.build_dir(True, _all_sources()), build.build_dir(False, _all_sources())))
    (cuda_a, cpu_a), (cuda_b, cpu_b) = keys
    assert cuda_a != cuda_b and cpu_a == cpu_b


# ---------------------------------------------------------------- 5. bf16 logits reach the kernel
@pytest.mark.parametrize("path", ["chunked", "logits"])
def test_bf16_training_hands_the_kernel_bf16_logits(fused_cpu, tiny_model_dir, tmp_path, monkeypatch, path):
    """`ours` trains from hidden states (chunked: each chunk's logits) by default; the logits path is what
    FSDP and heads without a teacher cache take. Either way the kernel reads bf16, accumulates in fp32."""
    seen = []

    def check(student, teacher, loss, k, beta, valid):
        fp32 = reference_loss(student.detach().float(), teacher.float(), k, beta, valid)
        seen.append((student.dtype, teacher.dtype, loss.detach(), fp32))

    if path == "chunked":
        real_rows = chunked.row_terms

        def spy_rows(student, teacher, valid, k, beta):
            out = real_rows(student, teacher, valid, k, beta)
            check(student, teacher, out[0].mean(), k, beta, valid)
            return out

        monkeypatch.setattr(chunked, "row_terms", spy_rows)
    else:
        real = kernels.topk_union_smooth_l1_loss

        def spy(student, teacher, **kw):
            loss = real(student, teacher, **kw)
            check(student, teacher, loss, kw["k"], kw["beta"], kw["valid"])
            return loss

        monkeypatch.setattr(kernels, "topk_union_smooth_l1_loss", spy)
        monkeypatch.setattr(train, "_chunked_head", lambda *a: None)
    data = write_jsonl(tmp_path / "d.jsonl", RECORDS)
    distill(tiny_distill_config(tiny_model_dir, data, tmp_path / "o", dtype="bfloat16", loss_impl="fused",
                                max_steps=1))
    assert seen
    for student_dtype, teacher_dtype, loss, fp32 in seen:
        assert student_dtype == torch.bfloat16 and teacher_dtype in (torch.bfloat16, torch.float32)
        assert loss.dtype == torch.float32  # accumulated in fp32 by the kernel
        torch.testing.assert_close(loss, fp32, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- 6. mixed dtypes: one rule in both
def _loss_and_grad(student, teacher, impl, **kw):
    s = student.detach().clone().requires_grad_(True)
    loss = topk_union_smooth_l1_loss(s, teacher, impl=impl, **kw)
    loss.backward()
    return loss.detach(), s.grad


@pytest.mark.parametrize("student_dtype,teacher_dtype", [
    (torch.bfloat16, torch.float32), (torch.float16, torch.float32),  # read by the kernels as they are
    (torch.float32, torch.bfloat16), (torch.bfloat16, torch.float16), (torch.float32, torch.float64),  # up-cast
])
def test_mixed_dtypes_fused_matches_reference(fused_cpu, student_dtype, teacher_dtype):
    g = torch.Generator().manual_seed(3)
    s = (torch.randn(37, 300, generator=g, dtype=torch.float64) * 3).to(student_dtype)
    t = (torch.randn(37, 300, generator=g, dtype=torch.float64) * 3).to(teacher_dtype)  # not bf16-representable
    valid = torch.rand(37, generator=g) > 0.2
    lf, gf = _loss_and_grad(s, t, "fused", k=5, valid=valid)
    lr, gr = _loss_and_grad(s, t, "reference", k=5, valid=valid)
    assert lf.dtype == lr.dtype == torch.promote_types(torch.promote_types(student_dtype, teacher_dtype), torch.float32)
    assert gf.dtype == gr.dtype == student_dtype
    torch.testing.assert_close(lf, lr, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gf.float(), gr.float(), rtol=1e-5, atol=1e-6)


def test_half_student_with_fp32_teacher_goes_in_without_a_copy(fused_cpu):
    s, t = torch.randn(2, 3, 17).to(torch.bfloat16), torch.randn(2, 3, 17)
    got_s, got_t = kernels.kernel_inputs(s, t)
    assert got_s is s and got_t is t
    valid = torch.tensor([[True, False, True], [True, True, True]])
    torch.library.opcheck(topk_union_smooth_l1, (s.requires_grad_(True), t, valid, 3, 1.0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")
@pytest.mark.parametrize("student_dtype", [torch.bfloat16, torch.float16])
def test_mixed_dtypes_on_cuda_match_reference(student_dtype):
    if backend("cuda") != "fused-cuda":
        pytest.fail(f"torch sees a GPU but the CUDA kernel did not build: {backend('cuda').reason}")
    g = torch.Generator(device="cuda").manual_seed(5)
    s = (torch.randn(33, 5000, generator=g, device="cuda") * 3).to(student_dtype)
    t = torch.randn(33, 5000, generator=g, device="cuda") * 3
    lf, gf = _loss_and_grad(s, t, "fused", k=20)
    lr, gr = _loss_and_grad(s, t, "reference", k=20)
    torch.testing.assert_close(lf, lr, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gf.float(), gr.float(), rtol=1e-5, atol=1e-6)
