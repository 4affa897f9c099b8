// Device code of the CUDA top-K-union Smooth-L1 kernel (SPEC §4), in a header so that ONE source is
// compiled two ways: by nvcc (csrc/topk_union_loss.cu, the real kernel) and by a host C++ compiler with
// csrc/cuda_host_shim.h (tests/test_kernels_cuda_logic.py runs the kernel's logic on CPU threads
// against the reference). A CUDA feature the shim does not model yet (an intrinsic, dynamic shared
// memory, ...) fails the host build or aborts the run: add its model to the shim with the kernel change.
// Include it after <cuda_*.h> (nvcc) or the shim, from ONE translation unit (internal namespace).
//
// One block of 256 threads per row (grid-stride over rows).
//
// Per row and per side (teacher, then student), "filtered top-K":
//  1. Bound: every thread takes the max key over its share of a short prefix (256 x 32 elements); the
//     K-th largest of those 256 maxima is a lower bound for the row's K-th largest key, because K
//     distinct elements reach it. (K <= 256; keys are (ordered value bits << 32 | ~index), so larger
//     key = larger value, then LOWER index: exactly the tie-break of SPEC §4.)
//  2. One coalesced pass over the row (16-byte loads, several in flight: scan_row) appends every key
//     >= bound to a shared-memory buffer (a few times K entries on real logits) and flags NaN/±inf.
//  3. Bitonic sort of the buffer in shared memory; the first K keys are the top-K.
//     If the buffer overflows (large K), the K-th largest of the threads' largest candidates is a
//     tighter bound and one more pass collects again; if that overflows too (the top values sit in
//     fewer than K threads' shares of the row), an exact slow path takes K rounds of block max.
// Then the union, the Smooth-L1 terms and the gradient coefficients are formed in shared memory and
// the row loss is summed by one thread in index order (deterministic). Arithmetic is fp32 for
// float, __half and __nv_bfloat16 inputs (student and teacher may differ: see topk_union_loss.h).
#pragma once

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#elif !defined(MULE_CUDA_HOST_SHIM)
#error "include <cuda_runtime.h> (nvcc) or cuda_host_shim.h (host build) before topk_union_loss_device.cuh"
#endif

#include <cstdint>

#include "topk_union_loss.h"

namespace {  // internal linkage: one including translation unit per program (see above)

constexpr int kThreads = 256;
constexpr int kMaxK = 256;
constexpr int kCap = 4096;        // candidate keys per block (32 KiB)
constexpr int kSampleItems = 32;  // prefix elements per thread for the bound
constexpr int kUnroll = 4;        // 16-byte loads in flight per thread (scan_row)

typedef unsigned long long u64;

struct Smem {
  u64 cand[kCap];
  u64 tmax[kThreads];
  u64 red[kThreads / 32];
  uint32_t top_t[kMaxK];
  uint32_t top_s[kMaxK];
  uint32_t uni[2 * kMaxK];
  float huber[2 * kMaxK];
  unsigned char dup[kMaxK];
  int count;
  int bad;
  int n_union;
  u64 red_result;
};

template <typename T> __device__ __forceinline__ float to_float(T v);
template <> __device__ __forceinline__ float to_float<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

__device__ __forceinline__ bool nonfinite(float f) { return (__float_as_uint(f) & 0x7f800000u) == 0x7f800000u; }

// Monotone map float -> uint32 (with -0 == +0, as a float comparison sees them).
__device__ __forceinline__ uint32_t ordered(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) == 0u) u = 0u;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ u64 key_from(uint32_t ordered_value, int64_t i) {
  return (static_cast<u64>(ordered_value) << 32) | static_cast<u64>(~static_cast<uint32_t>(i));
}
__device__ __forceinline__ u64 make_key(float v, int64_t i) { return key_from(ordered(v), i); }
__device__ __forceinline__ uint32_t key_index(u64 key) { return ~static_cast<uint32_t>(key & 0xffffffffull); }
__device__ __forceinline__ u64 umax(u64 a, u64 b) { return a > b ? a : b; }

// Element e of 16 bytes of T loaded as a uint4 (little-endian: the lower half of a word comes first), as
// float. e is a compile-time constant after unrolling, so the word is picked without local memory.
__device__ __forceinline__ uint32_t word_of(const uint4& v, int w) {
  return w == 0 ? v.x : w == 1 ? v.y : w == 2 ? v.z : v.w;
}
template <typename T> __device__ __forceinline__ float unpack(const uint4& v, int e);
template <> __device__ __forceinline__ float unpack<float>(const uint4& v, int e) {
  return __uint_as_float(word_of(v, e));
}
template <> __device__ __forceinline__ float unpack<__nv_bfloat16>(const uint4& v, int e) {
  const uint32_t w = word_of(v, e >> 1);
  return __uint_as_float((e & 1) ? (w & 0xffff0000u) : (w << 16));  // exactly __bfloat162float
}
template <> __device__ __forceinline__ float unpack<__half>(const uint4& v, int e) {
  const uint32_t w = word_of(v, e >> 1);
  return __half2float(__ushort_as_half(static_cast<unsigned short>((e & 1) ? (w >> 16) : (w & 0xffffu))));
}

// Calls visit(i, x[i] as float) once for every i in [0, n), spread over the block's threads (in no
// defined order). Why this shape: the loss is bound by how fast rows stream from memory, and one
// 2-byte load per thread at a time leaves the memory system idle. So the body is read as 16-byte
// vectors, kUnroll of them in flight per thread, consecutive threads on consecutive vectors
// (coalesced); the few elements before the first 16-byte boundary and after the last vector are
// read one by one.
template <typename T, typename Visit>
__device__ __forceinline__ void scan_row(const T* __restrict__ x, int64_t n, Visit&& visit) {
  constexpr int kPerVec = 16 / sizeof(T);
  const int tid = threadIdx.x;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(x);
  int64_t head = addr % sizeof(T) != 0 ? n : static_cast<int64_t>(((16u - addr % 16u) % 16u) / sizeof(T));
  if (head > n) head = n;
  for (int64_t i = tid; i < head; i += kThreads) visit(i, to_float(x[i]));  // one pass unless x is not T-aligned
  const int64_t nvec = (n - head) / kPerVec;
  const uint4* vec = reinterpret_cast<const uint4*>(x + head);
  for (int64_t base = 0; base < nvec; base += int64_t(kThreads) * kUnroll) {
    uint4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t j = base + u * kThreads + tid;
      v[u] = j < nvec ? __ldg(vec + j) : uint4{};
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t j = base + u * kThreads + tid;
      if (j < nvec) {
#pragma unroll
        for (int e = 0; e < kPerVec; ++e) visit(head + j * kPerVec + e, unpack<T>(v[u], e));
      }
    }
  }
  for (int64_t i = head + nvec * kPerVec + tid; i < n; i += kThreads) visit(i, to_float(x[i]));
}

// Descending bitonic sort of arr[0..n), n a power of two; callers sync before, it syncs after.
__device__ void bitonic_sort_desc(u64* arr, int n) {
  for (int k = 2; k <= n; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const int ixj = i ^ j;
        if (ixj > i) {
          const u64 a = arr[i], b = arr[ixj];
          const bool desc = (i & k) == 0;
          if (desc ? (a < b) : (a > b)) {
            arr[i] = b;
            arr[ixj] = a;
          }
        }
      }
      __syncthreads();
    }
  }
}

__device__ u64 block_max(u64 m, Smem& sm) {
  for (int off = 16; off > 0; off >>= 1) m = umax(m, __shfl_down_sync(0xffffffffu, m, off));
  if ((threadIdx.x & 31) == 0) sm.red[threadIdx.x >> 5] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    u64 r = sm.red[0];
    for (int w = 1; w < kThreads / 32; ++w) r = umax(r, sm.red[w]);
    sm.red_result = r;
  }
  __syncthreads();
  const u64 r = sm.red_result;
  __syncthreads();
  return r;
}

// Top-K indices (unordered) of x[0..V) into out; false (block-uniform) if x holds NaN/±inf.
template <typename T>
__device__ bool select_topk(const T* __restrict__ x, int64_t V, int K, uint32_t* out, Smem& sm) {
  const int tid = threadIdx.x;
  const int64_t prefix = V < int64_t(kThreads) * kSampleItems ? V : int64_t(kThreads) * kSampleItems;
  u64 m = 0;
  scan_row(x, prefix, [&](int64_t i, float v) {
    if (!nonfinite(v)) m = umax(m, make_key(v, i));
  });
  sm.tmax[tid] = m;
  __syncthreads();
  bitonic_sort_desc(sm.tmax, kThreads);
  const u64 bound = sm.tmax[K - 1];  // 0 (accept all) when fewer than K threads saw an element
  if (tid == 0) {
    sm.count = 0;
    sm.bad = 0;
  }
  __syncthreads();

  // Appends every key >= b to sm.cand (sm.count counts all, also past kCap); keeps this thread's
  // largest appended key in cand_max and flags NaN/±inf in bad.
  int bad = 0;
  u64 cand_max = 0;
  auto collect = [&](u64 b) {
    const uint32_t b_value = static_cast<uint32_t>(b >> 32);
    scan_row(x, V, [&](int64_t i, float v) {
      bad |= nonfinite(v);
      const uint32_t o = ordered(v);
      if (o >= b_value) {  // most elements stop here, before a 64-bit key is built
        const u64 key = key_from(o, i);
        if (key >= b) {
          cand_max = umax(cand_max, key);
          const int pos = atomicAdd(&sm.count, 1);
          if (pos < kCap) sm.cand[pos] = key;
        }
      }
    });
  };
  collect(bound);
  if (bad) atomicOr(&sm.bad, 1);
  __syncthreads();
  int count = sm.count;
  if (sm.bad) return false;
  if (count > kCap) {
    // Overflow (large K, or a prefix unlike the rest of the row): the K-th largest of the threads'
    // largest candidates is a tighter bound (K distinct elements reach it), found over the WHOLE row;
    // one more pass with it. Deterministic: each thread's share of the row is fixed.
    sm.tmax[tid] = cand_max;
    __syncthreads();
    bitonic_sort_desc(sm.tmax, kThreads);
    const u64 tight = sm.tmax[K - 1];
    if (tight > bound) {
      if (tid == 0) sm.count = 0;
      __syncthreads();
      collect(tight);
      __syncthreads();
      count = sm.count;
    }
  }

  if (count <= kCap) {  // the usual case: a few K candidates
    int n = 1;
    while (n < count) n <<= 1;
    for (int i = count + tid; i < n; i += kThreads) sm.cand[i] = 0;
    __syncthreads();
    bitonic_sort_desc(sm.cand, n);
    for (int i = tid; i < K; i += kThreads) out[i] = key_index(sm.cand[i]);
  } else {  // exact slow path (the top values sit in fewer than K threads' shares): K rounds of
            // "largest key below the previous one"
    u64 prev = ~0ull;
    for (int r = 0; r < K; ++r) {
      u64 best = 0;
      for (int64_t i = tid; i < V; i += kThreads) {
        const u64 key = make_key(to_float(x[i]), i);
        if (key < prev && key > best) best = key;
      }
      best = block_max(best, sm);
      if (tid == 0) out[r] = key_index(best);
      prev = best;
    }
  }
  __syncthreads();
  return true;
}

template <typename S, typename T>
__global__ void __launch_bounds__(kThreads) topk_union_kernel(mule::TopkUnionArgs a) {
  __shared__ Smem sm;
  const int tid = threadIdx.x;
  const int64_t N = a.B * a.T, V = a.V, W = a.width;
  const int K = static_cast<int>(a.k);
  const float beta = static_cast<float>(a.beta);
  float* row_loss = static_cast<float*>(a.row_loss);
  const S* Ss = static_cast<const S*>(a.student);
  const T* Tt = static_cast<const T*>(a.teacher);

  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    int64_t* idx_r = a.idx + r * W;
    float* val_r = static_cast<float*>(a.val) + r * W;
    if (a.valid != nullptr && !a.valid[r]) {
      for (int64_t u = tid; u < W; u += kThreads) {
        idx_r[u] = 0;
        val_r[u] = 0.f;
      }
      if (tid == 0) row_loss[r] = 0.f;
      continue;
    }
    const int64_t b = r / a.T, t = r % a.T;
    const S* s_row = Ss + b * a.s_stride_b + t * a.s_stride_t;
    const T* t_row = Tt + b * a.t_stride_b + t * a.t_stride_t;
    const bool ok = select_topk(t_row, V, K, sm.top_t, sm) && select_topk(s_row, V, K, sm.top_s, sm);
    if (!ok) {
      for (int64_t u = tid; u < W; u += kThreads) {
        idx_r[u] = 0;
        val_r[u] = __int_as_float(0x7fc00000);
      }
      if (tid == 0) row_loss[r] = __int_as_float(0x7fc00000);
      __syncthreads();
      continue;
    }
    // U = T ∪ S, laid out in increasing index order (rank = how many union members are smaller).
    if (tid == 0) sm.n_union = K;
    for (int j = tid; j < K; j += kThreads) {
      const uint32_t c = sm.top_s[j];
      unsigned char in_t = 0;
      for (int i = 0; i < K; ++i) in_t |= (sm.top_t[i] == c);
      sm.dup[j] = in_t;
    }
    __syncthreads();
    for (int slot = tid; slot < 2 * K; slot += kThreads) {
      const bool from_t = slot < K;
      if (!from_t && sm.dup[slot - K]) continue;
      const uint32_t c = from_t ? sm.top_t[slot] : sm.top_s[slot - K];
      int rank = 0;
      for (int i = 0; i < K; ++i) rank += sm.top_t[i] < c;
      for (int j = 0; j < K; ++j) rank += (!sm.dup[j]) && sm.top_s[j] < c;
      sm.uni[rank] = c;
      if (!from_t) atomicAdd(&sm.n_union, 1);
    }
    __syncthreads();
    const int U = sm.n_union;
    const float inv_u = 1.f / static_cast<float>(U);
    for (int u = tid; u < U; u += kThreads) {
      const uint32_t j = sm.uni[u];
      const float d = to_float(s_row[j]) - to_float(t_row[j]);
      const float ad = fabsf(d);
      sm.huber[u] = ad < beta ? 0.5f * d * d / beta : ad - 0.5f * beta;
      idx_r[u] = j;
      val_r[u] = fminf(1.f, fmaxf(-1.f, d / beta)) * inv_u;
    }
    if (U < W) {  // padding slots repeat slot 0, so a plain scatter stays deterministic
      const uint32_t j0 = sm.uni[0];
      const float d0 = to_float(s_row[j0]) - to_float(t_row[j0]);
      const float g0 = fminf(1.f, fmaxf(-1.f, d0 / beta)) * inv_u;
      for (int64_t u = U + tid; u < W; u += kThreads) {
        idx_r[u] = j0;
        val_r[u] = g0;
      }
    }
    __syncthreads();
    if (tid == 0) {
      float sum = 0.f;
      for (int u = 0; u < U; ++u) sum += sm.huber[u];
      row_loss[r] = sum * inv_u;
    }
    __syncthreads();
  }
}

// Argument checks, grid size and the dtype dispatch of the launcher, shared by nvcc and the shim:
// `launch(kernel, grid)` launches `kernel` (a topk_union_kernel instantiation) on `grid` blocks of
// kThreads threads without dynamic shared memory and returns a cudaError_t as int. N == 0 launches
// nothing; an unsupported argument returns cudaErrorInvalidValue without launching.
template <typename Launch>
int dispatch_topk_union(int student_dtype, int teacher_dtype, const mule::TopkUnionArgs& args, Launch&& launch) {
  const int64_t N = args.B * args.T;
  if (N == 0) return 0;
  if (args.k < 1 || args.k > kMaxK || args.k > args.V || args.V >= (int64_t(1) << 32) ||
      !mule::supported_pair(student_dtype, teacher_dtype))
    return static_cast<int>(cudaErrorInvalidValue);
  const unsigned grid = static_cast<unsigned>(N < (int64_t(1) << 30) ? N : (int64_t(1) << 30));
  const bool mixed = student_dtype != teacher_dtype;  // then the teacher is float32 (supported_pair)
  switch (student_dtype) {
    case mule::kFloat32: return launch(topk_union_kernel<float, float>, grid);
    case mule::kFloat16:
      return mixed ? launch(topk_union_kernel<__half, float>, grid) : launch(topk_union_kernel<__half, __half>, grid);
    case mule::kBFloat16:
      return mixed ? launch(topk_union_kernel<__nv_bfloat16, float>, grid)
                   : launch(topk_union_kernel<__nv_bfloat16, __nv_bfloat16>, grid);
    default: return static_cast<int>(cudaErrorInvalidValue);
  }
}

}  // namespace
