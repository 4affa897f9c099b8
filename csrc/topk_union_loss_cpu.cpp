// CPU kernel of the top-K-union Smooth-L1 loss: one pass per row over student and teacher.
//
// Per row: a bounded min-heap holds the best K entries seen so far (order: larger value first, then
// lower index). Entries are scanned in increasing index order, so a newcomer enters only if it is
// STRICTLY larger than the heap minimum (an equal value has a higher index and loses the tie). The
// scan works in chunks of 16: one vectorisable compare against the current K-th value (plus a
// finiteness test) rejects a whole chunk, which is what almost every chunk of a logits row is.
#include "topk_union_loss.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <type_traits>
#include <vector>

namespace mule {
namespace {

constexpr int64_t kChunk = 16;  // elements per early-reject test (two 8-wide compares)

template <typename scalar_t> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

template <typename scalar_t>
inline typename Acc<scalar_t>::type load(const scalar_t* p) {
  return static_cast<typename Acc<scalar_t>::type>(*p);
}

template <typename acc_t> struct Entry {
  acc_t v;
  int64_t i;
};

// std heap comparator: "a is better than b" puts the WORST entry at the front (a min-heap).
template <typename acc_t> struct Better {
  bool operator()(const Entry<acc_t>& a, const Entry<acc_t>& b) const {
    return a.v > b.v || (a.v == b.v && a.i < b.i);
  }
};

constexpr int kAbove = 1, kBad = 2;

// Bit kAbove: some element > thr; bit kBad: some element is NaN/±inf (x - x is NaN exactly then).
// The float version uses GCC/Clang vector extensions so the common "reject the chunk" path is a
// handful of SIMD compares on any x86-64/ARM baseline, without relying on auto-vectorisation.
template <typename acc_t>
inline int chunk_flags(const acc_t* buf, acc_t thr) {
  int above = 0, bad = 0;
  for (int64_t j = 0; j < kChunk; ++j) {
    above |= buf[j] > thr;
    bad |= !(buf[j] - buf[j] == acc_t(0));
  }
  return (above ? kAbove : 0) | (bad ? kBad : 0);
}

#if defined(__GNUC__)
typedef float f4 __attribute__((vector_size(16)));
typedef int i4 __attribute__((vector_size(16)));
template <>
inline int chunk_flags<float>(const float* buf, float thr) {
  f4 v[kChunk / 4];
  __builtin_memcpy(v, buf, sizeof(v));
  const f4 th = {thr, thr, thr, thr};
  i4 above = v[0] > th, bad = (v[0] - v[0]) != 0;
  for (int q = 1; q < kChunk / 4; ++q) {
    above |= v[q] > th;
    bad |= (v[q] - v[q]) != 0;  // NaN != 0 is true
  }
  const int a = (above[0] | above[1] | above[2] | above[3]) != 0;
  const int b = (bad[0] | bad[1] | bad[2] | bad[3]) != 0;
  return (a ? kAbove : 0) | (b ? kBad : 0);
}
#endif

// First chunk start >= i (in steps of kChunk) whose chunk may matter: an element > thr, or a NaN/-inf
// (caught by !(v >= -FLT_MAX)); +inf is > thr. Only float32 rows take the SIMD path: it is the hot
// loop of the whole op, compiled for AVX-512/AVX2 with a baseline fallback picked at load time.
template <typename scalar_t>
inline int64_t skip_rejected(const scalar_t*, int64_t i, int64_t, typename Acc<scalar_t>::type) {
  return i;
}

#if defined(__GNUC__) && defined(__x86_64__)
#define MULE_TARGET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MULE_TARGET_CLONES
#endif

#if defined(__GNUC__)
typedef float f8 __attribute__((vector_size(32)));
typedef int i8 __attribute__((vector_size(32)));

MULE_TARGET_CLONES
int64_t skip_rejected_f32(const float* x, int64_t i, int64_t V, float thr) {
  const f8 th = {thr, thr, thr, thr, thr, thr, thr, thr};
  const float lo_s = -std::numeric_limits<float>::max();
  const f8 lo = {lo_s, lo_s, lo_s, lo_s, lo_s, lo_s, lo_s, lo_s};
  // Blocks of 64: eight 8-wide compares OR-ed together, one horizontal test per block.
  for (; i + 4 * kChunk <= V; i += 4 * kChunk) {
    i8 m = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int q = 0; q < 8; ++q) {
      f8 a;
      __builtin_memcpy(&a, x + i + 8 * q, sizeof(a));
      m |= (a > th) | ~(a >= lo);
    }
    const int any = m[0] | m[1] | m[2] | m[3] | m[4] | m[5] | m[6] | m[7];
    if (any) break;  // locate the first interesting 16-chunk below
  }
  for (; i + kChunk <= V; i += kChunk) {
    f8 a, b;
    __builtin_memcpy(&a, x + i, sizeof(a));
    __builtin_memcpy(&b, x + i + 8, sizeof(b));
    const i8 m = (a > th) | (b > th) | ~(a >= lo) | ~(b >= lo);
    const int any = m[0] | m[1] | m[2] | m[3] | m[4] | m[5] | m[6] | m[7];
    if (any) return i;
  }
  return i;
}

template <>
inline int64_t skip_rejected<float>(const float* x, int64_t i, int64_t V, float thr) {
  return skip_rejected_f32(x, i, V, thr);
}
#endif

// Top-K indices of x[0..V) into `out` (unordered). Returns false when x holds NaN or ±inf.
template <typename scalar_t>
bool topk_row(const scalar_t* x, int64_t V, int64_t K, std::vector<Entry<typename Acc<scalar_t>::type>>& heap,
              std::vector<int64_t>& out) {
  using acc_t = typename Acc<scalar_t>::type;
  Better<acc_t> better;
  heap.clear();
  for (int64_t i = 0; i < K; ++i) {
    acc_t v = load(x + i);
    if (!std::isfinite(v)) return false;
    heap.push_back({v, i});
  }
  std::make_heap(heap.begin(), heap.end(), better);
  acc_t thr = heap.front().v;
  const int64_t size = static_cast<int64_t>(heap.size());
  auto offer = [&](acc_t v, int64_t i) {  // replace the worst entry and sift it down
    if (!(v > thr)) return;
    const Entry<acc_t> e{v, i};
    int64_t pos = 0;
    for (;;) {
      int64_t child = 2 * pos + 1;
      if (child >= size) break;
      if (child + 1 < size && better(heap[child], heap[child + 1])) ++child;  // the worse child
      if (!better(e, heap[child])) break;
      heap[pos] = heap[child];
      pos = child;
    }
    heap[pos] = e;
    thr = heap.front().v;
  };
  int64_t i = K;
  for (; i + kChunk <= V; i += kChunk) {
    i = skip_rejected(x, i, V, thr);  // jump over whole chunks that cannot change the heap
    if (i + kChunk > V) break;
    acc_t buf[kChunk];
    for (int64_t j = 0; j < kChunk; ++j) buf[j] = load(x + i + j);
    const int flags = chunk_flags(buf, thr);
    if (flags & kBad) return false;
    if (flags & kAbove) {  // visit only the lanes above the threshold (few), in index order
      unsigned bits = 0;
      for (int64_t j = 0; j < kChunk; ++j) bits |= static_cast<unsigned>(buf[j] > thr) << j;
      while (bits) {
        const int j = __builtin_ctz(bits);
        bits &= bits - 1;
        offer(buf[j], i + j);
      }
    }
  }
  for (; i < V; ++i) {
    acc_t v = load(x + i);
    if (!std::isfinite(v)) return false;
    offer(v, i);
  }
  out.clear();
  for (const auto& e : heap) out.push_back(e.i);
  return true;
}

template <typename s_t, typename t_t>
void forward(const TopkUnionArgs& a) {
  using acc_t = typename Acc<s_t>::type;
  static_assert(std::is_same<acc_t, typename Acc<t_t>::type>::value, "both sides accumulate in one type");
  const auto* S = static_cast<const s_t*>(a.student);
  const auto* Tt = static_cast<const t_t*>(a.teacher);
  auto* row_loss = static_cast<acc_t*>(a.row_loss);
  auto* val = static_cast<acc_t*>(a.val);
  const int64_t N = a.B * a.T, V = a.V, K = a.k, W = a.width;
  const acc_t beta = static_cast<acc_t>(a.beta);
  const acc_t nan = std::numeric_limits<acc_t>::quiet_NaN();
  // A row costs ~2V element reads; a grain of a few rows keeps scheduling overhead negligible.
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(V, 1));

  at::parallel_for(0, N, grain, [&](int64_t begin, int64_t end) {
    std::vector<Entry<acc_t>> heap;
    heap.reserve(K);
    std::vector<int64_t> top_t, top_s, uni;
    top_t.reserve(K);
    top_s.reserve(K);
    uni.reserve(2 * K);
    for (int64_t r = begin; r < end; ++r) {
      int64_t* idx_r = a.idx + r * W;
      acc_t* val_r = val + r * W;
      if (a.valid && !a.valid[r]) {
        row_loss[r] = 0;
        std::fill(idx_r, idx_r + W, int64_t(0));
        std::fill(val_r, val_r + W, acc_t(0));
        continue;
      }
      const int64_t b = r / a.T, t = r % a.T;
      const s_t* s_row = S + b * a.s_stride_b + t * a.s_stride_t;
      const t_t* t_row = Tt + b * a.t_stride_b + t * a.t_stride_t;
      if (!topk_row(t_row, V, K, heap, top_t) || !topk_row(s_row, V, K, heap, top_s)) {
        row_loss[r] = nan;
        std::fill(idx_r, idx_r + W, int64_t(0));
        std::fill(val_r, val_r + W, nan);
        continue;
      }
      // U = T ∪ S in increasing index order (fixed summation order -> deterministic loss).
      std::sort(top_t.begin(), top_t.end());
      std::sort(top_s.begin(), top_s.end());
      uni.clear();
      std::set_union(top_t.begin(), top_t.end(), top_s.begin(), top_s.end(), std::back_inserter(uni));
      const int64_t U = static_cast<int64_t>(uni.size());
      const acc_t inv_u = acc_t(1) / static_cast<acc_t>(U);
      acc_t sum = 0;
      for (int64_t u = 0; u < U; ++u) {
        const int64_t j = uni[u];
        const acc_t d = load(s_row + j) - load(t_row + j);
        const acc_t ad = std::abs(d);
        sum += ad < beta ? acc_t(0.5) * d * d / beta : ad - acc_t(0.5) * beta;
        idx_r[u] = j;
        val_r[u] = std::min(acc_t(1), std::max(acc_t(-1), d / beta)) * inv_u;
      }
      for (int64_t u = U; u < W; ++u) {
        idx_r[u] = idx_r[0];
        val_r[u] = val_r[0];
      }
      row_loss[r] = sum * inv_u;
    }
  });
}

}  // namespace

void topk_union_forward_cpu(int student_dtype, int teacher_dtype, const TopkUnionArgs& args) {
  if (teacher_dtype == kFloat32 && student_dtype == kFloat16) return forward<c10::Half, float>(args);
  if (teacher_dtype == kFloat32 && student_dtype == kBFloat16) return forward<c10::BFloat16, float>(args);
  if (teacher_dtype != student_dtype) throw std::invalid_argument("topk_union_forward_cpu: unsupported dtype pair");
  switch (student_dtype) {
    case kFloat32: return forward<float, float>(args);
    case kFloat64: return forward<double, double>(args);
    case kFloat16: return forward<c10::Half, c10::Half>(args);
    case kBFloat16: return forward<c10::BFloat16, c10::BFloat16>(args);
    default: throw std::invalid_argument("topk_union_forward_cpu: unsupported dtype code");
  }
}

}  // namespace mule
