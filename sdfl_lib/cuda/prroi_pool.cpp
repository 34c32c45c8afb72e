// Registers the Precise RoI Pooling CUDA kernels as torch.ops.sdfl_prroi.{forward,backward} and
// checks the arguments before launching. TORCH_LIBRARY instead of pybind11 keeps the build short.
#include <torch/library.h>

#include "prroi_pool.h"

namespace {

void check_rois(const at::Tensor& rois, const at::Tensor& like) {
  TORCH_CHECK(rois.is_cuda(), "prroi_pool: rois must be a CUDA tensor");
  TORCH_CHECK(rois.device() == like.device(), "prroi_pool: rois and features on different devices");
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, "prroi_pool: rois must be (K, 5), got ",
              rois.sizes());
}

at::Tensor prroi_pool_forward(const at::Tensor& features, const at::Tensor& rois,
                              int64_t pooled_height, int64_t pooled_width, double spatial_scale) {
  TORCH_CHECK(features.is_cuda(), "prroi_pool: features must be a CUDA tensor");
  TORCH_CHECK(features.dim() == 4, "prroi_pool: features must be (N, C, H, W), got ",
              features.sizes());
  check_rois(rois, features);
  TORCH_CHECK(pooled_height > 0 && pooled_width > 0, "prroi_pool: pooled sizes must be positive");
  return prroi_pool_forward_cuda(features, rois, pooled_height, pooled_width, spatial_scale);
}

at::Tensor prroi_pool_backward(const at::Tensor& grad_out, const at::Tensor& rois, int64_t batch,
                               int64_t height, int64_t width, double spatial_scale) {
  TORCH_CHECK(grad_out.is_cuda(), "prroi_pool: grad_out must be a CUDA tensor");
  TORCH_CHECK(grad_out.dim() == 4 && grad_out.size(0) == rois.size(0),
              "prroi_pool: grad_out must be (K, C, PH, PW) with K = number of rois");
  check_rois(rois, grad_out);
  TORCH_CHECK(batch > 0 && height > 0 && width > 0, "prroi_pool: empty feature map");
  return prroi_pool_backward_cuda(grad_out, rois, batch, height, width, spatial_scale);
}

}  // namespace

TORCH_LIBRARY(sdfl_prroi, m) {
  m.def("forward(Tensor features, Tensor rois, int pooled_height, int pooled_width, "
        "float spatial_scale) -> Tensor");
  m.def("backward(Tensor grad_out, Tensor rois, int batch, int height, int width, "
        "float spatial_scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(sdfl_prroi, CUDA, m) {
  m.impl("forward", &prroi_pool_forward);
  m.impl("backward", &prroi_pool_backward);
}
