// Host shim: compiles CUDA DEVICE code (csrc/topk_union_loss_device.cuh) with a plain C++20 compiler so
// its logic runs on the CPU (tests/test_kernels_cuda_logic.py; no GPU needed). Not part of the
// extension build. What it models, and why that way:
//  - One std::thread per CUDA thread of a block, so the code runs truly concurrently: a missing
//    __syncthreads shows up as a race, as on a GPU. __syncthreads = a std::barrier of the block.
//  - Blocks of a grid run one after another on the same threads (blockIdx changes between them), and
//    `__shared__` is `static`: one storage per kernel instantiation, shared by the block's threads and
//    left as the previous block wrote it (like real shared memory: never cleared between blocks).
//    Hence launches must not overlap (call launch() from one host thread).
//  - Warp intrinsics (__shfl*_sync, __ballot_sync, __any/__all_sync, __syncwarp) exchange values
//    through a per-warp buffer and barrier; only full-warp masks are modelled (else abort).
//  - 16-byte vector loads (__ldg of uint4) abort on a misaligned address, as a GPU faults.
//  - Atomics are std::atomic_ref; __half/__nv_bfloat16 are 16-bit structs with the bit-exact
//    conversions (float -> 16 bit rounds to nearest even, NaN -> the CUDA canonical 0x7fff).
// Anything not modelled (dynamic shared memory, partial masks) aborts with a message instead of
// silently behaving differently. Only what the kernel uses, plus close siblings, is provided.
#pragma once
#define MULE_CUDA_HOST_SHIM 1

#include <algorithm>
#include <atomic>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

// ---------------------------------------------------------------- built-in variables and types
struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct alignas(16) uint4 {
  unsigned x = 0, y = 0, z = 0, w = 0;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
constexpr int warpSize = 32;

enum cudaError { cudaSuccess = 0, cudaErrorInvalidValue = 1 };  // values of driver_types.h
typedef cudaError cudaError_t;

namespace mule_shim {

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "cuda_host_shim: %s\n", what);
  std::abort();
}

struct Warp {
  explicit Warp(unsigned n) : lanes(n), bar(n) {}
  unsigned lanes;
  std::barrier<> bar;
  // Two buffers used alternately: a lane writing call n+2's value has passed call n+1's barrier, which
  // every lane reaches only after reading call n's values — so one barrier per exchange suffices.
  alignas(8) unsigned char slot[2][32][8];
};

struct Block {
  Block(unsigned n, unsigned warp_count) : bar(n) {
    for (unsigned w = 0; w < warp_count; ++w) warps.push_back(std::make_unique<Warp>(std::min(32u, n - 32 * w)));
  }
  std::barrier<> bar;
  std::vector<std::unique_ptr<Warp>> warps;
};

inline thread_local Block* tl_block = nullptr;
inline thread_local Warp* tl_warp = nullptr;
inline thread_local unsigned tl_lane = 0;
inline thread_local unsigned tl_parity = 0;

inline Warp& warp_of(unsigned mask) {
  if (tl_warp == nullptr) fail("warp intrinsic outside a kernel launched by mule_shim::launch");
  const unsigned full = tl_warp->lanes == 32 ? 0xffffffffu : (1u << tl_warp->lanes) - 1u;
  if ((mask & full) != full) fail("only full-warp masks are modelled in warp intrinsics");
  return *tl_warp;
}

// Publishes this lane's v; returns the warp's buffer once every lane has published.
template <typename T>
const unsigned char (*publish(unsigned mask, T v))[8] {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "warp exchange of a type over 8 bytes");
  Warp& w = warp_of(mask);
  auto& buf = w.slot[tl_parity];
  tl_parity ^= 1u;
  std::memcpy(buf[tl_lane], &v, sizeof(T));
  w.bar.arrive_and_wait();
  return buf;
}

// The value of lane `src` (own value when src is -1 or past the warp), as the __shfl*_sync family.
template <typename T>
T shuffle(unsigned mask, T v, int src) {
  const auto buf = publish(mask, v);
  T out = v;
  if (src >= 0 && static_cast<unsigned>(src) < tl_warp->lanes) std::memcpy(&out, buf[src], sizeof(T));
  return out;
}

inline void check_width(int width) {
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) fail("shuffle width must be a power of two <= 32");
}

// Runs kernel(args...) on grid x block CPU threads (see the file comment); returns once all finished.
template <typename... P, typename... A>
void launch(dim3 grid, dim3 block, size_t shared_bytes, void (*kernel)(P...), A&&... args) {
  if (shared_bytes != 0) fail("dynamic shared memory is not modelled");
  const unsigned n = block.x * block.y * block.z;
  if (n == 0 || n > 1024) fail("block size must be 1..1024 threads");
  Block blk(n, (n + 31) / 32);
  const std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);  // converted as a <<<>>> call would
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (unsigned t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      threadIdx = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
      blockDim = block;
      gridDim = grid;
      tl_block = &blk;
      tl_warp = blk.warps[t / 32].get();
      tl_lane = t % 32;
      tl_parity = 0;
      for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
          for (unsigned x = 0; x < grid.x; ++x) {
            blockIdx = uint3{x, y, z};
            std::apply(kernel, params);  // by value, as each CUDA thread gets its own copy of the arguments
            blk.bar.arrive_and_wait();   // the next block reuses the __shared__ storage
          }
      tl_block = nullptr;
      tl_warp = nullptr;
    });
  }
  for (auto& th : threads) th.join();
}

}  // namespace mule_shim

// ---------------------------------------------------------------- synchronisation and warp intrinsics
inline void __syncthreads() {
  if (mule_shim::tl_block == nullptr) mule_shim::fail("__syncthreads outside a kernel");
  mule_shim::tl_block->bar.arrive_and_wait();
}
inline void __syncwarp(unsigned mask = 0xffffffffu) { mule_shim::warp_of(mask).bar.arrive_and_wait(); }
inline unsigned __activemask() { return 0xffffffffu; }

template <typename T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = warpSize) {
  mule_shim::check_width(width);
  const int base = static_cast<int>(mule_shim::tl_lane) & ~(width - 1);
  return mule_shim::shuffle(mask, v, base + (src_lane & (width - 1)));
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  mule_shim::check_width(width);
  const int lane = static_cast<int>(mule_shim::tl_lane), in_group = lane & (width - 1);
  return mule_shim::shuffle(mask, v, in_group >= static_cast<int>(delta) ? lane - static_cast<int>(delta) : -1);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  mule_shim::check_width(width);
  const int lane = static_cast<int>(mule_shim::tl_lane), in_group = lane & (width - 1);
  return mule_shim::shuffle(mask, v, in_group + static_cast<int>(delta) < width ? lane + static_cast<int>(delta) : -1);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize) {
  mule_shim::check_width(width);
  const int lane = static_cast<int>(mule_shim::tl_lane), src = lane ^ lane_mask;
  const int group_end = (lane & ~(width - 1)) + width;  // later groups are out of reach (own value)
  return mule_shim::shuffle(mask, v, src < group_end ? src : -1);
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  const auto buf = mule_shim::publish(mask, pred != 0 ? 1 : 0);
  unsigned bits = 0;
  for (unsigned l = 0; l < mule_shim::tl_warp->lanes; ++l) {
    int p;
    std::memcpy(&p, buf[l], sizeof p);
    bits |= static_cast<unsigned>(p) << l;
  }
  return bits;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) {
  const unsigned lanes = mule_shim::tl_warp == nullptr ? 32 : mule_shim::tl_warp->lanes;
  return __ballot_sync(mask, pred) == (lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u);
}

// ---------------------------------------------------------------- atomics (return the old value)
template <typename T> T atomicAdd(T* p, std::type_identity_t<T> v) { return std::atomic_ref<T>(*p).fetch_add(v); }
template <typename T> T atomicSub(T* p, std::type_identity_t<T> v) { return std::atomic_ref<T>(*p).fetch_sub(v); }
template <typename T> T atomicOr(T* p, std::type_identity_t<T> v) { return std::atomic_ref<T>(*p).fetch_or(v); }
template <typename T> T atomicAnd(T* p, std::type_identity_t<T> v) { return std::atomic_ref<T>(*p).fetch_and(v); }
template <typename T> T atomicXor(T* p, std::type_identity_t<T> v) { return std::atomic_ref<T>(*p).fetch_xor(v); }
template <typename T> T atomicExch(T* p, std::type_identity_t<T> v) { return std::atomic_ref<T>(*p).exchange(v); }
template <typename T> T atomicCAS(T* p, std::type_identity_t<T> expected, std::type_identity_t<T> v) {
  std::atomic_ref<T>(*p).compare_exchange_strong(expected, v);
  return expected;  // the old value either way
}
template <typename T> T atomicMax(T* p, std::type_identity_t<T> v) {
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (old < v && !a.compare_exchange_weak(old, v)) {}
  return old;
}
template <typename T> T atomicMin(T* p, std::type_identity_t<T> v) {
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (v < old && !a.compare_exchange_weak(old, v)) {}
  return old;
}

// ---------------------------------------------------------------- loads
// __ldg of a 16-byte vector: a GPU faults ("misaligned address") unless p is 16-byte aligned, so the
// shim aborts there too; the bytes are copied (the buffer may hold any element type).
inline uint4 __ldg(const uint4* p) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) mule_shim::fail("__ldg(const uint4*): address not 16-byte aligned");
  uint4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// ---------------------------------------------------------------- bit casts
inline unsigned __float_as_uint(float f) { return std::bit_cast<unsigned>(f); }
inline int __float_as_int(float f) { return std::bit_cast<int>(f); }
inline float __uint_as_float(unsigned u) { return std::bit_cast<float>(u); }
inline float __int_as_float(int i) { return std::bit_cast<float>(i); }
inline long long __double_as_longlong(double d) { return std::bit_cast<long long>(d); }
inline double __longlong_as_double(long long i) { return std::bit_cast<double>(i); }

// ---------------------------------------------------------------- __half and __nv_bfloat16
struct __half {
  unsigned short __x;
};
struct __nv_bfloat16 {
  unsigned short __x;
};
static_assert(sizeof(__half) == 2 && sizeof(__nv_bfloat16) == 2, "16-bit types must match the storage of torch");

inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short u) { return __half{u}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16{u}; }

inline float __bfloat162float(__nv_bfloat16 h) { return std::bit_cast<float>(static_cast<uint32_t>(h.__x) << 16); }

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{0x7fff};      // NaN: CUDA's canonical NaN
  const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);                // to nearest, ties to even
  return __nv_bfloat16{static_cast<unsigned short>(rounded >> 16)};       // (overflow carries into inf)
}
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }

inline float __half2float(__half h) {
  const uint32_t sign = static_cast<uint32_t>(h.__x & 0x8000u) << 16;
  const uint32_t exp = (h.__x >> 10) & 0x1fu, mant = h.__x & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float
    const float mag = std::ldexp(static_cast<float>(mant), -24);
    return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(mag));
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf, NaN (payload kept)
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

inline __half __float2half_rn(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const unsigned short sign = static_cast<unsigned short>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return __half{0x7fff};                        // NaN: CUDA's canonical NaN
  if (a >= 0x477ff000u) return __half{static_cast<unsigned short>(sign | 0x7c00u)};  // >= 65520: inf
  if (a < 0x38800000u) {  // below 2^-14: a multiple of 2^-24; the scaling is exact, nearbyint rounds to even
    const float units = std::nearbyint(std::bit_cast<float>(a) * 16777216.0f);
    return __half{static_cast<unsigned short>(sign | static_cast<unsigned>(units))};  // 1024 = min normal
  }
  const uint32_t mant = a & 0x7fffffu, rem = mant & 0x1fffu;
  uint32_t h = ((((a >> 23) - 112u) << 10) | (mant >> 13));
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // to nearest, ties to even (carry is exact)
  return __half{static_cast<unsigned short>(sign | h)};
}
inline __half __float2half(float f) { return __float2half_rn(f); }
