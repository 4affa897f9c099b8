// Thin binding: checks and allocates with ATen, then calls the raw-pointer kernels.
// The Python side (mule_cli/kernels/op.py) registers these as the CPU/CUDA kernels of the custom op
// `mule::topk_union_smooth_l1`; autograd, fake tensors and the reduction over rows live there.
#include <torch/extension.h>

#include "topk_union_loss.h"

#ifdef MULE_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace {

int dtype_code(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return mule::kFloat32;
    case at::kDouble: return mule::kFloat64;
    case at::kHalf: return mule::kFloat16;
    case at::kBFloat16: return mule::kBFloat16;
    default: TORCH_CHECK(false, "topk_union_smooth_l1: unsupported dtype ", t);
  }
}

// Returns (row_loss [N], idx [N, W] int64, val [N, W]) for [B, T, V] logits and a [B, T] bool mask.
std::vector<at::Tensor> forward(at::Tensor student, at::Tensor teacher, at::Tensor valid, int64_t k, double beta,
                                bool cuda) {
  TORCH_CHECK(student.dim() == 3 && teacher.sizes() == student.sizes(), "expected matching [B, T, V] logits");
  const int s_code = dtype_code(student.scalar_type()), t_code = dtype_code(teacher.scalar_type());
  TORCH_CHECK(mule::supported_pair(s_code, t_code), "topk_union_smooth_l1: student ", student.scalar_type(),
              " with teacher ", teacher.scalar_type(),
              " (the kernels take one dtype, or a float16/bfloat16 student with a float32 teacher)");
  TORCH_CHECK(valid.scalar_type() == at::kBool && valid.dim() == 2 && valid.size(0) == student.size(0) &&
                  valid.size(1) == student.size(1), "valid must be a [B, T] bool mask");
  const int64_t V = student.size(2);
  TORCH_CHECK(k >= 1 && k <= V, "k must be in [1, V]");
  TORCH_CHECK(beta > 0, "beta must be > 0");
  if (student.stride(2) != 1) student = student.contiguous();
  if (teacher.stride(2) != 1) teacher = teacher.contiguous();
  valid = valid.contiguous();
  const int64_t B = student.size(0), T = student.size(1), N = B * T, W = std::min<int64_t>(2 * k, V);
  const auto acc = student.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto opts = student.options().dtype(acc);
  at::Tensor row_loss = at::empty({N}, opts);
  at::Tensor idx = at::empty({N, W}, student.options().dtype(at::kLong));
  at::Tensor val = at::empty({N, W}, opts);
  if (N == 0) return {row_loss, idx, val};

  mule::TopkUnionArgs args{student.data_ptr(), teacher.data_ptr(), valid.data_ptr<bool>(), B, T, V,
                           student.stride(0), student.stride(1), teacher.stride(0), teacher.stride(1), k, beta, W,
                           row_loss.data_ptr(), idx.data_ptr<int64_t>(), val.data_ptr()};
  if (!cuda) {
    TORCH_CHECK(student.device().is_cpu(), "forward_cpu got a ", student.device(), " tensor");
    mule::topk_union_forward_cpu(s_code, t_code, args);
    return {row_loss, idx, val};
  }
#ifdef MULE_WITH_CUDA
  TORCH_CHECK(student.is_cuda() && teacher.is_cuda() && valid.is_cuda(), "forward_cuda needs CUDA tensors");
  TORCH_CHECK(s_code != mule::kFloat64, "the CUDA kernel supports float32/float16/bfloat16");
  TORCH_CHECK(k <= 256, "the CUDA kernel supports k <= 256");
  const c10::cuda::CUDAGuard guard(student.device());
  const int err = mule_topk_union_forward_cuda(s_code, t_code, &args, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, "topk_union CUDA kernel launch failed (cudaError ", err, ")");
  return {row_loss, idx, val};
#else
  TORCH_CHECK(false, "this build of the mule extension has no CUDA kernel");
#endif
}

bool has_cuda() {
#ifdef MULE_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "mule fused top-K-union Smooth-L1 loss kernels";
  m.def("forward_cpu", [](at::Tensor s, at::Tensor t, at::Tensor v, int64_t k, double beta) {
    return forward(s, t, v, k, beta, false);
  });
  m.def("forward_cuda", [](at::Tensor s, at::Tensor t, at::Tensor v, int64_t k, double beta) {
    return forward(s, t, v, k, beta, true);
  });
  m.def("has_cuda", &has_cuda);
}
