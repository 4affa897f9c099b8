// Runs the CUDA kernel's device code (csrc/topk_union_loss_device.cuh) on CPU threads through
// csrc/cuda_host_shim.h, on arrays in files; built and driven by tests/test_kernels_cuda_logic.py.
// A subprocess (not ctypes) so that a deadlock (a divergent __syncthreads) or a crash fails one test
// with a timeout or an exit status instead of taking pytest down.
//
//   driver topk SD TD B T V K BETA GRID S_FILE S_SB S_ST T_FILE T_SB T_ST VALID_FILE|- OUT_FILE
//     SD/TD: dtype codes of topk_union_loss.h; S_FILE/T_FILE: the raw logits buffers, rows at
//     b*SB + t*ST elements; VALID_FILE: B*T bytes (0/1) or - (no mask); GRID 0: the launcher's own
//     grid (one block per row), else that many blocks (grid-stride loop over rows).
//     OUT_FILE: row_loss float32[B*T], idx int64[B*T*W], val float32[B*T*W], W = min(2K, V).
//     Exit 4: the launcher refused the arguments (cudaErrorInvalidValue); 3: a write outside the outputs.
//   driver convert bf16_to_f32|f16_to_f32|f32_to_bf16|f32_to_f16 IN OUT   (the shim's conversions)
//
// Inputs sit between guard zones of 0xff bytes (NaN in every dtype): a read outside a row's
// [0, V) turns up as a NaN row. Outputs are pre-filled with 0xa5 and guarded: a slot the kernel
// never writes keeps garbage, and a write past the end is reported.
#include "cuda_host_shim.h"
#include "topk_union_loss_device.cuh"

#include <fstream>
#include <iterator>
#include <string>

namespace {

constexpr size_t kGuard = 1 << 16;  // bytes before and after each buffer

std::vector<unsigned char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) mule_shim::fail(("cannot read " + path).c_str());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const void* data, size_t bytes, bool append) {
  std::ofstream out(path, std::ios::binary | (append ? std::ios::app : std::ios::trunc));
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!out) mule_shim::fail(("cannot write " + path).c_str());
}

// A buffer with guard zones on both sides; data() points past the front guard.
struct Guarded {
  Guarded(size_t bytes, unsigned char fill, unsigned char guard) : mem(bytes + 2 * kGuard, guard), size(bytes) {
    std::memset(mem.data() + kGuard, fill, bytes);
  }
  unsigned char* data() { return mem.data() + kGuard; }
  bool guards_intact(unsigned char guard) const {
    for (size_t i = 0; i < kGuard; ++i)
      if (mem[i] != guard || mem[kGuard + size + i] != guard) return false;
    return true;
  }
  std::vector<unsigned char> mem;
  size_t size;
};

Guarded input(const std::string& path) {
  const auto bytes = read_file(path);
  Guarded g(bytes.size(), 0, 0xff);
  std::memcpy(g.data(), bytes.data(), bytes.size());
  return g;
}

int run_topk(char** a) {
  const int sd = std::stoi(a[0]), td = std::stoi(a[1]);
  const int64_t B = std::stoll(a[2]), T = std::stoll(a[3]), V = std::stoll(a[4]), K = std::stoll(a[5]);
  const double beta = std::stod(a[6]);
  const unsigned grid = static_cast<unsigned>(std::stoul(a[7]));
  Guarded s = input(a[8]), t = input(a[11]);
  const std::string valid_path = a[14], out_path = a[15];
  Guarded valid(static_cast<size_t>(B * T), 1, 0);
  if (valid_path != "-") valid = input(valid_path);
  const int64_t N = B * T, W = std::min<int64_t>(2 * K, V);
  Guarded loss(N * 4, 0xa5, 0x5a), idx(N * W * 8, 0xa5, 0x5a), val(N * W * 4, 0xa5, 0x5a);
  mule::TopkUnionArgs args{s.data(), t.data(), valid_path == "-" ? nullptr : reinterpret_cast<bool*>(valid.data()),
                           B, T, V, std::stoll(a[9]), std::stoll(a[10]), std::stoll(a[12]), std::stoll(a[13]),
                           K, beta, W, loss.data(), reinterpret_cast<int64_t*>(idx.data()), val.data()};
  const int err = dispatch_topk_union(sd, td, args, [&](auto kernel, unsigned launcher_grid) {
    mule_shim::launch(dim3(grid != 0 ? grid : launcher_grid), dim3(kThreads), 0, kernel, args);
    return 0;
  });
  if (err != 0) {
    std::fprintf(stderr, "launcher returned cudaError %d\n", err);
    return 4;
  }
  if (!loss.guards_intact(0x5a) || !idx.guards_intact(0x5a) || !val.guards_intact(0x5a)) {
    std::fprintf(stderr, "the kernel wrote outside row_loss/idx/val\n");
    return 3;
  }
  write_file(out_path, loss.data(), loss.size, false);
  write_file(out_path, idx.data(), idx.size, true);
  write_file(out_path, val.data(), val.size, true);
  return 0;
}

int run_convert(const std::string& kind, const std::string& in_path, const std::string& out_path) {
  const auto in = read_file(in_path);
  std::vector<unsigned char> out;
  auto emit = [&](const auto& v) {
    const auto* p = reinterpret_cast<const unsigned char*>(&v);
    out.insert(out.end(), p, p + sizeof v);
  };
  for (size_t i = 0; i < in.size();) {
    if (kind == "bf16_to_f32" || kind == "f16_to_f32") {
      unsigned short h;
      std::memcpy(&h, &in[i], 2);
      i += 2;
      emit(kind == "bf16_to_f32" ? __bfloat162float(__ushort_as_bfloat16(h)) : __half2float(__ushort_as_half(h)));
    } else if (kind == "f32_to_bf16" || kind == "f32_to_f16") {
      float f;
      std::memcpy(&f, &in[i], 4);
      i += 4;
      emit(kind == "f32_to_bf16" ? __bfloat16_as_ushort(__float2bfloat16(f)) : __half_as_ushort(__float2half(f)));
    } else {
      mule_shim::fail("unknown conversion");
    }
  }
  write_file(out_path, out.data(), out.size(), false);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "topk" && argc == 18) return run_topk(argv + 2);
  if (mode == "convert" && argc == 5) return run_convert(argv[2], argv[3], argv[4]);
  std::fprintf(stderr, "usage: see the comment at the top of tests/cuda_logic_driver.cpp\n");
  return 2;
}
