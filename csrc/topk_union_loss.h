// Shared, torch-free declarations of the top-K-union Smooth-L1 kernels (SPEC §4).
//
// Both kernels take raw pointers so the CUDA file compiles with a plain `nvcc -c` and the CPU file
// needs only <ATen/Parallel.h>. Logits are [B, T, V] with unit stride over V and arbitrary strides
// over B and T (so a sliced `logits[:, :-1]` needs no copy). Per valid row the kernels write
//   row_loss[r]            = (1/|U|) Σ_{j∈U} huber_β(s_j − t_j)
//   idx[r, 0..W), val[r, 0..W)  the sparse gradient clamp((s_j−t_j)/β, −1, 1)/|U|, W = min(2K, V);
// slots past |U| repeat slot 0 (same index, same value) so a plain scatter stays deterministic.
// Invalid rows get loss 0, idx 0, val 0. A row with NaN/±inf in s or t gets loss NaN and val NaN.
//
// Dtypes: student and teacher of one dtype, or a float16/bfloat16 student with a float32 teacher. Each
// element is up-cast to the accumulation type (float; double for float64) as it is read, so a mixed
// pair needs no copy and neither side is rounded to the other's precision.
#pragma once
#include <cstdint>

namespace mule {

enum DTypeCode : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

struct TopkUnionArgs {
  const void* student;
  const void* teacher;
  const bool* valid;  // [B*T], row-major over (B, T)
  int64_t B, T, V;
  int64_t s_stride_b, s_stride_t, t_stride_b, t_stride_t;  // in elements
  int64_t k;
  double beta;
  int64_t width;   // W = min(2K, V): slots per row of idx/val
  void* row_loss;  // [B*T] acc type (double for float64 inputs, float otherwise)
  int64_t* idx;    // [B*T, W]
  void* val;       // [B*T, W] acc type
};

// True for the (student, teacher) dtype pairs the kernels read directly (see "Dtypes" above).
inline bool supported_pair(int student_dtype, int teacher_dtype) {
  return student_dtype == teacher_dtype ||
         (teacher_dtype == kFloat32 && (student_dtype == kFloat16 || student_dtype == kBFloat16));
}

// CPU: rows in parallel (at::parallel_for); K-th-value threshold rejects most elements in one compare.
void topk_union_forward_cpu(int student_dtype, int teacher_dtype, const TopkUnionArgs& args);

}  // namespace mule

// CUDA launcher (csrc/topk_union_loss.cu): float32/float16/bfloat16 (pairs as above), K <= 256.
// `stream` is a cudaStream_t. Returns a cudaError_t as int (0 = success).
extern "C" int mule_topk_union_forward_cuda(int student_dtype, int teacher_dtype, const mule::TopkUnionArgs* args,
                                            void* stream);
