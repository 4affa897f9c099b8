"""The CUDA kernel's logic, run on the CPU against the reference (no GPU needed).

The device code in csrc/topk_union_loss_device.cuh — the very source nvcc compiles through
csrc/topk_union_loss.cu — is compiled by the host C++ compiler with csrc/cuda_host_shim.h (one
std::thread per CUDA thread, std::barrier for __syncthreads, per-warp exchange for shuffles,
std::atomic_ref atomics, bit-exact __half/__nv_bfloat16) into tests/cuda_logic_driver.cpp, and driven
through the production launcher's argument checks and dtype dispatch. Each row's union U (as a set,
exactly), its loss and its sparse gradient are compared with the reference (`reference_loss` and its
tie rule `selected_set`) on random, tie-heavy, ±0, NaN/±inf, masked, padded-stride, ascending,
constant and striped rows (the top values in half the threads' shares: candidate overflow); V from 1
to 40,000; K in {1, 2, 3, 20, 64, 128, 256} and K = V; fp32, bf16, fp16 and the mixed
half-student/fp32-teacher pairs. Row starts fall at many alignments, so 16-byte loads meet heads and
tails (the shim aborts on a misaligned vector load, as a GPU faults). What it does not show: speed,
occupancy, or behaviour that depends on the GPU's memory model or warp scheduling beyond what real
threads reproduce.

Budget: `make test` runs a fixed sample of the grid (about 200 rows, about half a minute on 2 busy
cores: every __syncthreads wakes 256 OS threads); MULE_CUDA_LOGIC_FULL=1 runs the whole grid (2,560
cases, 10,280 rows: 40 minutes here; all passed).
The driver is built once per source hash into $TMPDIR/mule-cuda-logic-UID/ (skipped where no C++20
compiler with <barrier> exists; CXX picks the compiler). MULE_CUDA_LOGIC_TSAN=1 builds it with
ThreadSanitizer, so a shared-memory access that no __syncthreads or atomic orders fails even when the
values come out right (the sample takes 7 minutes here and is clean; mutant (b') below is reported
as a data race at the read of sm.dup).

The test catches broken device code. Shown on mutated copies of the device header (MUTATIONS below;
MULE_CUDA_LOGIC_MUTANTS=1 rebuilds and reruns them on the random/ties/zeros/ascending/striped cases
of the sample and asserts each is caught; a case that deadlocks fails after 120 s); observed on this
machine (2026-12-04, with 16-byte loads and the tightened bound):
  (a) tie-break flipped — make_key/key_index keep the index instead of its complement, so the HIGHER
      index wins ties: 12 of 27 cases fail, every one with ties at the K-th value (ties, zeros, bf16/f16
      ascending), e.g. "ties-V5-K2-bf16/f32-5rows row 0: union differs (|U|=3); missing [0], extra
      [4]"; the tie-free float32 cases pass, as they should.
  (b) the __syncthreads between the stages of bitonic_sort_desc removed: 25 of 27 cases fail (a
      race: the count varies by run; earlier 22-23 of 25), e.g.
      "ties-V3-K3-f32/f32-5rows row 0: union differs (|U|=3); missing [2], extra [], kernel order
      [0, 0, 1]" (a duplicate key from overlapping stages), several with a crash (driver exit -11).
  (b') the __syncthreads between the union's duplicate flags and their use removed: 23 of 27 fail,
      e.g. "random-V2-K2-bf16/f32-5rows row 0: union differs (|U|=2); missing [1]" (stale flags).
  The fourth mutant (warp reduction over 8 lanes instead of 16) fails exactly one case, the striped
  K = 256 row, the only one whose tightened bound overflows too: evidence that the sample reaches the
  exact slow path and the shuffle emulation (the ascending rows now end at the tightened bound).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from mule_cli.kernels.build import csrc_dir
from mule_cli.kernels.reference import reference_loss
from mule_cli.losses.topk import selected_set

FULL = os.environ.get("MULE_CUDA_LOGIC_FULL") == "1"
MUTANTS = os.environ.get("MULE_CUDA_LOGIC_MUTANTS") == "1"
TSAN = os.environ.get("MULE_CUDA_LOGIC_TSAN") == "1"
CXX = shlex.split(os.environ.get("CXX", "g++"))
CXXFLAGS = ["-std=c++20", "-O1", "-pthread", *(["-g", "-fsanitize=thread"] if TSAN else [])]
# ThreadSanitizer: a report (a shared-memory access no __syncthreads or atomic orders) fails the run
DRIVER_ENV = {**os.environ, "TSAN_OPTIONS": "halt_on_error=1 exitcode=66"} if TSAN else None
DRIVER = Path(__file__).with_name("cuda_logic_driver.cpp")
DEVICE_HEADER = "topk_union_loss_device.cuh"
HEADERS = ("cuda_host_shim.h", DEVICE_HEADER, "topk_union_loss.h")
CODE = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
RUN_TIMEOUT_S = 900  # a divergent __syncthreads deadlocks the barrier: fail instead of hanging
MUTANT_TIMEOUT_S = 120  # a mutant's race can make threads disagree on a branch around a barrier


# ---------------------------------------------------------------- building the driver
def build_driver(device_header: str | None = None) -> Path:
    """The driver executable, compiled once per (compiler, flags, sources) hash; `device_header`
    replaces csrc/topk_union_loss_device.cuh (the mutants)."""
    found = shutil.which(CXX[0]) if CXX else None
    if found is None:
        pytest.skip(f"no C++ compiler ({shlex.join(CXX)}) on PATH: the CUDA logic cannot be compiled for the CPU")
    compiler = [found, *CXX[1:]]
    version = subprocess.run([*compiler, "--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256(f"{compiler}\0{version}\0{CXXFLAGS}\0{device_header}".encode())
    for path in [DRIVER, *(csrc_dir() / h for h in HEADERS)]:
        digest.update(path.read_bytes())
    out_dir = Path(tempfile.gettempdir()) / f"mule-cuda-logic-{os.getuid()}" / digest.hexdigest()[:16]
    exe = out_dir / "driver"
    if exe.is_file():
        return exe
    out_dir.mkdir(parents=True, exist_ok=True)
    probe = out_dir / "probe.cpp"
    probe.write_text("#include <barrier>\n#include <atomic>\nint main() { std::barrier<> b(1); int x = 0;"
                     " std::atomic_ref<int>(x).fetch_add(1); b.arrive_and_wait(); return x - 1; }\n")
    proc = subprocess.run([*compiler, *CXXFLAGS, str(probe), "-o", str(out_dir / "probe")], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"{shlex.join(compiler)} is no C++20 compiler with <barrier>/atomic_ref: "
                    f"{proc.stderr.strip()[-300:]}")
    includes = ["-I", str(csrc_dir())]
    if device_header is not None:  # found before csrc/'s copy: quoted includes search -I dirs in order
        (out_dir / "mutant").mkdir(exist_ok=True)
        (out_dir / "mutant" / DEVICE_HEADER).write_text(device_header)
        includes = ["-I", str(out_dir / "mutant"), *includes]
    tmp = out_dir / f"driver.{os.getpid()}"
    proc = subprocess.run([*compiler, *CXXFLAGS, *includes, str(DRIVER), "-o", str(tmp)], capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"the host build of the CUDA device code failed:\n{proc.stderr[-4000:]}")
    os.replace(tmp, exe)  # atomic: a concurrent session sees no half-written driver
    return exe


@pytest.fixture(scope="session")
def driver() -> Path:
    return build_driver()


# ---------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    kind: str  # random ties zeros nonfinite masked padded ascending constant striped
    V: int
    K: int
    s_dtype: torch.dtype
    t_dtype: torch.dtype
    rows: int
    beta: float = 1.0
    grid: int = 0  # 0: the launcher's grid (a block per row); n: n blocks striding over the rows

    def __str__(self) -> str:
        names = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}
        grid = f"-grid{self.grid}" if self.grid else ""
        return f"{self.kind}-V{self.V}-K{self.K}-{names[self.s_dtype]}/{names[self.t_dtype]}-{self.rows}rows{grid}"


KINDS = ("random", "ties", "zeros", "nonfinite", "masked", "padded", "ascending", "constant")
PAIRS = ((torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16), (torch.float16, torch.float16),
         (torch.bfloat16, torch.float32), (torch.float16, torch.float32))
VS = (1, 2, 3, 5, 31, 256, 257, 1000, 4097, 8193, 12000, 20000)
KS = (1, 2, 3, 20, 64, 128, 256)
# (V, K) of the sample `make test` runs: every V and K above, K = V and the sizes around powers of two;
# the overflow paths (ascending and striped rows overflow the candidate buffer: the tightened bound, and for
# striped K = 256 the exact slow path) are in the extras.
SAMPLE_VK = ((1, 1), (2, 2), (3, 1), (3, 3), (5, 2), (31, 20), (31, 31), (256, 256), (257, 128), (257, 64),
             (1000, 20), (1000, 3), (4097, 256), (8193, 20), (12000, 64), (20000, 20), (20000, 1), (20000, 2),
             (300, 256), (2000, 128))


def rows_for(V: int) -> int:
    return 2 if V > 5000 else 5


def sample_cases() -> list[Case]:
    """Every kind with every dtype pair, the (V, K) pairs assigned round-robin (one rotation per kind
    so each kind meets many sizes), plus a few targeted cases."""
    cases = []
    for i, kind in enumerate(KINDS):
        for j, (sd, td) in enumerate(PAIRS):
            V, K = SAMPLE_VK[(3 * i + 7 * j) % len(SAMPLE_VK)]
            cases.append(Case(kind, V, K, sd, td, rows_for(V)))
    cases += [
        Case("ascending", 20000, 20, torch.float32, torch.float32, 1),  # overflow, tightened bound, ties-free
        Case("ascending", 20000, 256, torch.bfloat16, torch.bfloat16, 1),  # overflow at K = 256, bf16 ties
        Case("striped", 40000, 20, torch.float32, torch.float32, 1),  # overflow, tightened bound
        Case("striped", 40000, 256, torch.bfloat16, torch.bfloat16, 1),  # tightened bound overflows: slow path
        Case("ties", 20000, 128, torch.float16, torch.float16, 1),
        Case("masked", 700, 20, torch.float32, torch.float32, 9, grid=3),  # 3 blocks stride over 9 rows
        Case("nonfinite", 300, 64, torch.bfloat16, torch.float32, 8, grid=2),
        Case("random", 500, 20, torch.float32, torch.float32, 4, beta=0.25),
        Case("zeros", 256, 128, torch.float16, torch.float16, 4, beta=3.0),
    ]
    return cases


def full_cases() -> list[Case]:
    return [Case(kind, V, K, sd, td, rows_for(V)) for kind in KINDS for (sd, td) in PAIRS for V in VS
            for K in sorted({*KS, V} if V <= 256 else set(KS)) if K <= V]


def make_values(case: Case, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(student [rows, V], teacher [rows, V]) in float64 before the cast to the case's dtypes, and the
    valid mask (None: no mask handed to the kernel)."""
    g = torch.Generator().manual_seed(seed)
    rows, V = case.rows, case.V
    randn = lambda: torch.randn(rows, V, generator=g, dtype=torch.float64) * 3  # noqa: E731
    s, t, valid = randn(), randn(), None
    if case.kind == "ties":  # three levels: a third of the row ties for the top value
        s = torch.randint(0, 3, (rows, V), generator=g).double() / 4
        t = torch.randint(0, 3, (rows, V), generator=g).double() / 4
    elif case.kind == "zeros":  # +0 and -0 are one value: lower index wins whatever the sign
        def signed_zeros():
            x = torch.where(torch.rand(rows, V, generator=g) < 0.5, 0.0, -0.0).double()
            few = torch.rand(rows, V, generator=g) < 3.0 / V  # a few positives above the zeros
            return torch.where(few, torch.rand(rows, V, generator=g, dtype=torch.float64) + 1, x)
        s, t = signed_zeros(), signed_zeros()
    elif case.kind == "nonfinite":  # rows cycle: clean, NaN in s, +inf in t, -inf in s and NaN in t
        for r in range(rows):
            pos = int(torch.randint(0, V, (1,), generator=g))
            if r % 4 == 1:
                s[r, pos] = float("nan")
            elif r % 4 == 2:
                t[r, pos] = float("inf")
            elif r % 4 == 3:
                s[r, pos] = float("-inf")
                t[r, V - 1 - pos] = float("nan")
    elif case.kind == "masked":  # masked rows hold NaN: they must never be read
        valid = torch.rand(rows, generator=g) > 0.4
        valid[0] = True
        if rows > 1:
            valid[1] = False
        s[~valid, 0] = float("nan")
        t[~valid, V // 2] = float("inf")
    elif case.kind == "ascending":  # the prefix bound is low: for V + K > 12,288 the buffer overflows
        s = torch.arange(V, dtype=torch.float64).expand(rows, V) + torch.arange(rows).unsqueeze(1)
    elif case.kind == "striped":  # the top values sit in the shares of threads 0-127 (16-byte vectors,
        # thread = vector % 256): the prefix bound and the tightened bound both overflow for K = 256
        per_vec = 16 // torch.empty((), dtype=case.s_dtype).element_size()
        i = torch.arange(V)
        high = (i // per_vec) % 256 < 128
        s = torch.where(high, 50 + i.double() * 10 / V, s)
        t = torch.where(high, 50 + (V - i).double() * 10 / V, t)
    elif case.kind == "constant":
        s = torch.full((rows, V), 1.5, dtype=torch.float64)
        t = torch.full((rows, V), -2.0, dtype=torch.float64)
        t[:, -1] = 7.0
    return s.to(case.s_dtype), t.to(case.t_dtype), valid


def layout(x: torch.Tensor, B: int, T: int, padded: bool) -> tuple[torch.Tensor, int, int]:
    """(flat buffer, stride over B, stride over T) holding the rows of x; padded: NaN between rows
    and between batches, so a read past V shows up as a NaN row."""
    V = x.shape[1]
    if not padded:
        return x.reshape(-1), T * V, V
    st = V + 5
    sb = T * st + 3
    buf = torch.full((B * sb,), float("nan"), dtype=x.dtype)
    for r in range(B * T):
        start = (r // T) * sb + (r % T) * st
        buf[start:start + V] = x[r]
    return buf, sb, st


def run_driver(exe: Path, tmp: Path, case: Case, s, t, valid, k=None, s_code=None, t_code=None,
               timeout=RUN_TIMEOUT_S):
    """Runs the kernel through the driver; returns (returncode, stderr, row_loss, idx, val)."""
    k = case.K if k is None else k
    rows, V = s.shape
    B = 2 if rows % 2 == 0 and rows > 0 else 1
    T = rows // B
    padded = case.kind == "padded"
    args = []
    for name, x in (("s", s), ("t", t)):
        buf, sb, st = layout(x, B, T, padded)
        buf.contiguous().view(torch.uint8).numpy().tofile(tmp / f"{name}.bin")
        args += [str(tmp / f"{name}.bin"), str(sb), str(st)]
    valid_arg = "-"
    if valid is not None:
        valid.to(torch.uint8).numpy().tofile(tmp / "valid.bin")
        valid_arg = str(tmp / "valid.bin")
    out = tmp / "out.bin"
    cmd = [str(exe), "topk", str(CODE[s.dtype] if s_code is None else s_code),
           str(CODE[t.dtype] if t_code is None else t_code), str(B), str(T), str(V), str(k), repr(case.beta),
           str(case.grid), *args, valid_arg, str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=DRIVER_ENV)
    if proc.returncode != 0:
        return proc.returncode, proc.stderr, None, None, None
    raw = out.read_bytes()
    W = min(2 * k, V)
    n = rows
    loss = np.frombuffer(raw, np.float32, n, 0)
    idx = np.frombuffer(raw, np.int64, n * W, 4 * n).reshape(n, W)
    val = np.frombuffer(raw, np.float32, n * W, 4 * n + 8 * n * W).reshape(n, W)
    return 0, proc.stderr, loss, idx, val


# ---------------------------------------------------------------- the comparison
def check_case(exe: Path, tmp: Path, case: Case, seed: int = 0, timeout: float = RUN_TIMEOUT_S) -> None:
    """Raises AssertionError naming the case and the first row where the kernel and reference differ."""
    s, t, valid = make_values(case, seed)
    try:
        rc, err, loss, idx, val = run_driver(exe, tmp, case, s, t, valid, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{case}: no result in {timeout} s (a deadlocked __syncthreads?)") from None
    assert rc == 0, f"{case}: driver exit {rc}: {err[-2000:]}"
    for r in range(case.rows):
        where = f"{case} row {r}"
        if valid is not None and not bool(valid[r]):
            assert loss[r] == 0 and not idx[r].any() and not val[r].any(), f"{where}: masked row not zeroed"
            continue
        sr, tr = s[r].float(), t[r].float()  # exact: each side read at its own precision, up-cast
        if not (bool(torch.isfinite(sr).all()) and bool(torch.isfinite(tr).all())):
            with pytest.raises(ValueError, match="non-finite"):
                reference_loss(sr[None], tr[None], k=case.K, beta=case.beta)
            assert np.isnan(loss[r]) and np.isnan(val[r]).all() and not idx[r].any(), f"{where}: NaN/inf row"
            continue
        union = selected_set(sr[None], tr[None], case.K)[0].nonzero().squeeze(-1)
        U = len(union)
        got = torch.from_numpy(idx[r, :U].copy())
        if not torch.equal(got, union):
            missing = sorted(set(union.tolist()) - set(got.tolist()))[:8]
            extra = sorted(set(got.tolist()) - set(union.tolist()))[:8]
            raise AssertionError(f"{where}: union differs (|U|={U}); missing {missing}, extra {extra}, "
                                 f"kernel order {got[:8].tolist()}...")
        assert (idx[r, U:] == idx[r, 0]).all() and (val[r, U:] == val[r, 0]).all(), f"{where}: padding slots"
        sg = sr.clone().requires_grad_(True)
        ref = reference_loss(sg[None], tr[None], k=case.K, beta=case.beta)
        ref.backward()
        torch.testing.assert_close(torch.tensor(float(loss[r])), ref.detach(), rtol=1e-5, atol=1e-6,
                                   msg=lambda m: f"{where}: loss: {m}")
        torch.testing.assert_close(torch.from_numpy(val[r, :U].copy()), sg.grad[union], rtol=1e-5, atol=1e-7,
                                   msg=lambda m: f"{where}: gradient: {m}")


CASES = full_cases() if FULL else sample_cases()


@pytest.mark.parametrize("case", CASES, ids=str)
def test_kernel_logic_matches_reference(driver, tmp_path, case):
    check_case(driver, tmp_path, case, seed=zlib.crc32(str(case).encode()))


def test_launcher_refuses_what_the_kernel_cannot_do(driver, tmp_path):
    """The launcher's checks run in the shim too: no launch for K > 256, K > V, float64 or a mixed pair
    other than half student / fp32 teacher (exit 4 = cudaErrorInvalidValue); N = 0 launches nothing."""
    case = Case("random", 300, 20, torch.float32, torch.float32, 2)
    s, t, _ = make_values(case, 0)
    for k, codes in ((257, (0, 0)), (301, (0, 0)), (0, (0, 0)), (20, (1, 1)), (20, (3, 2)), (20, (0, 3))):
        rc, err, *_ = run_driver(driver, tmp_path, case, s, t, None, k=k, s_code=codes[0], t_code=codes[1])
        assert rc == 4 and "cudaError 1" in err, (k, codes, rc, err)
    rc, err, loss, idx, val = run_driver(driver, tmp_path, case, s[:0], t[:0], None)
    assert rc == 0 and loss.size == 0 and idx.size == 0 and val.size == 0


def _convert(exe: Path, tmp: Path, kind: str, data: np.ndarray, out_dtype) -> np.ndarray:
    data.tofile(tmp / "in.bin")
    subprocess.run([str(exe), "convert", kind, str(tmp / "in.bin"), str(tmp / "out.bin")], check=True, timeout=300,
                   env=DRIVER_ENV)
    return np.fromfile(tmp / "out.bin", out_dtype)


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_shim_half_conversions_are_bit_exact(driver, tmp_path, half):
    """The shim's __half/__nv_bfloat16 <-> float match torch bit for bit (NaN only as NaN: CUDA makes
    0x7fff of every NaN): all 65,536 patterns up, and down every pattern, every midpoint between
    neighbours (ties to even), their float neighbours, and random floats."""
    name = "bf16" if half == torch.bfloat16 else "f16"
    patterns = np.arange(1 << 16, dtype=np.uint16)
    up = _convert(driver, tmp_path, f"{name}_to_f32", patterns, np.float32)
    want = torch.from_numpy(patterns.view(np.int16)).view(half).float().numpy()
    nan = np.isnan(want)
    assert (np.isnan(up) == nan).all() and (up.view(np.uint32)[~nan] == want.view(np.uint32)[~nan]).all()

    finite = np.sort(want[np.isfinite(want)].astype(np.float64))
    mids = ((finite[1:] + finite[:-1]) / 2).astype(np.float32)  # exact in float32 for both formats
    rng = np.random.default_rng(0)
    floats = np.concatenate([
        want, mids, np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(-np.inf)),
        rng.integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
        np.array([65504, 65519.996, 65520, 3.4e38, 1e-45, -1e-45, 2.0**-24, 2.0**-25, 3 * 2.0**-26], np.float32),
    ]).astype(np.float32)
    down = _convert(driver, tmp_path, f"f32_to_{name}", floats, np.uint16)
    want16 = torch.from_numpy(floats).to(half).view(torch.int16).numpy().view(np.uint16)
    nan = np.isnan(floats)
    assert (down[nan] == 0x7FFF).all()
    bad = np.nonzero(down[~nan] != want16[~nan])[0]
    assert bad.size == 0, [(float(floats[~nan][i]), hex(down[~nan][i]), hex(want16[~nan][i])) for i in bad[:5]]


# ---------------------------------------------------------------- the mutants (opt-in)
def _sync_after(marker: str) -> tuple[str, str]:
    return marker + "\n    __syncthreads();", marker


MUTATIONS = {
    "tie_break_flipped": [
        ("static_cast<u64>(~static_cast<uint32_t>(i))", "static_cast<u64>(static_cast<uint32_t>(i))"),
        ("return ~static_cast<uint32_t>(key & 0xffffffffull)", "return static_cast<uint32_t>(key & 0xffffffffull)"),
    ],
    "bitonic_sync_removed": [("        }\n      }\n      __syncthreads();\n", "        }\n      }\n")],
    "dup_sync_removed": [_sync_after("      sm.dup[j] = in_t;\n    }")],
    # not a plausible bug: proves the slow path (block_max, the warp shuffles) runs in the sample
    "shuffle_reduction_halved": [("for (int off = 16; off > 0;", "for (int off = 8; off > 0;")],
}
MUTANT_CASES = [c for c in sample_cases() if c.kind in ("random", "ties", "zeros", "ascending", "striped")]


def mutate(source: str, name: str) -> str:
    for old, new in MUTATIONS[name]:
        assert source.count(old) == 1, f"mutation {name}: {old!r} must occur once in {DEVICE_HEADER}"
        source = source.replace(old, new)
    return source


@pytest.mark.skipif(not MUTANTS, reason="set MULE_CUDA_LOGIC_MUTANTS=1 to check that broken device code is caught")
@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_mutants_are_caught(tmp_path, name):
    exe = build_driver(mutate((csrc_dir() / DEVICE_HEADER).read_text(), name))
    failures = []
    for case in MUTANT_CASES:
        try:
            check_case(exe, tmp_path, case, seed=zlib.crc32(str(case).encode()), timeout=MUTANT_TIMEOUT_S)
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0][:300])
    print(f"{name}: {len(failures)}/{len(MUTANT_CASES)} cases failed", *failures, sep="\n  ")
    assert failures, f"mutant {name} passed every case: the test would not catch it"
