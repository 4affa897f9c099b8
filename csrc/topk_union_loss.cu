// CUDA kernel of the top-K-union Smooth-L1 loss, written against raw pointers (no torch headers), so
// it compiles with a plain `nvcc -c`. The kernel itself lives in topk_union_loss_device.cuh (the same
// source is run on CPU threads by tests/test_kernels_cuda_logic.py); this file is only the launcher.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "topk_union_loss.h"
#include "topk_union_loss_device.cuh"

extern "C" int mule_topk_union_forward_cuda(int student_dtype, int teacher_dtype, const mule::TopkUnionArgs* args,
                                            void* stream) {
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  return dispatch_topk_union(student_dtype, teacher_dtype, *args, [&](auto kernel, unsigned grid) {
    kernel<<<grid, kThreads, 0, st>>>(*args);
    return static_cast<int>(cudaGetLastError());
  });
}
