// Precise RoI Pooling CUDA kernels: one thread per output element, running the per-element math
// of prroi_pool_math.h (the forward gathers its bin, the backward scatters with atomics).
// Method operators only (no ATen/ATen.h) and only c10/cuda headers for streams and devices:
// ATen/cuda/CUDAContext.h pulls in cuSPARSE/cuBLAS headers that minimal CUDA toolkits lack.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "prroi_pool.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "prroi_pool_math.h"

namespace {

constexpr int kThreads = 256;

// One output element per iteration; the grid is capped, so threads stride over the rest.
#define GRID_STRIDE_LOOP(idx, total)                                                         \
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < (total); \
       idx += static_cast<int64_t>(blockDim.x) * gridDim.x)

template <typename scalar_t, typename acc_t>
__global__ void prroi_forward_kernel(const scalar_t* __restrict__ features,
                                     const acc_t* __restrict__ rois, scalar_t* __restrict__ out,
                                     int64_t total, int C, int H, int W, int PH, int PW,
                                     acc_t scale) {
  GRID_STRIDE_LOOP(idx, total) {
    out[idx] = static_cast<scalar_t>(
        sdfl_prroi::forward_element<scalar_t, acc_t>(idx, features, rois, C, H, W, PH, PW, scale));
  }
}

struct AtomicAdd {
  template <typename acc_t>
  __device__ __forceinline__ void operator()(acc_t* ptr, acc_t value) const {
    atomicAdd(ptr, value);
  }
};

template <typename scalar_t, typename acc_t>
__global__ void prroi_backward_kernel(const scalar_t* __restrict__ grad_out,
                                      const acc_t* __restrict__ rois, acc_t* __restrict__ grad_in,
                                      int64_t total, int C, int H, int W, int PH, int PW,
                                      acc_t scale) {
  GRID_STRIDE_LOOP(idx, total) {
    sdfl_prroi::backward_element<acc_t>(idx, static_cast<acc_t>(grad_out[idx]), rois, grad_in, C,
                                        H, W, PH, PW, scale, AtomicAdd());
  }
}

int blocks_for(int64_t total, int device) {
  int sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t cap = static_cast<int64_t>(std::max(sms, 1)) * 64;
  return static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads, cap)));
}

// ROI coordinates and sums in float (double for double features).
at::ScalarType acc_type_of(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace

at::Tensor prroi_pool_forward_cuda(const at::Tensor& features_in, const at::Tensor& rois_in,
                                   int64_t pooled_height, int64_t pooled_width,
                                   double spatial_scale) {
  const c10::cuda::CUDAGuard guard(features_in.device());
  const at::Tensor features = features_in.contiguous();
  const at::Tensor rois = rois_in.to(acc_type_of(features.scalar_type())).contiguous();
  const int64_t K = rois.size(0), C = features.size(1), H = features.size(2), W = features.size(3);
  at::Tensor out = at::empty({K, C, pooled_height, pooled_width}, features.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  const int blocks = blocks_for(total, features.get_device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(),
                                  "prroi_pool_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    prroi_forward_kernel<scalar_t, acc_t><<<blocks, kThreads, 0, stream>>>(
        features.data_ptr<scalar_t>(), rois.data_ptr<acc_t>(), out.data_ptr<scalar_t>(), total,
        static_cast<int>(C), static_cast<int>(H), static_cast<int>(W),
        static_cast<int>(pooled_height), static_cast<int>(pooled_width),
        static_cast<acc_t>(spatial_scale));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor prroi_pool_backward_cuda(const at::Tensor& grad_out_in, const at::Tensor& rois_in,
                                    int64_t batch, int64_t height, int64_t width,
                                    double spatial_scale) {
  const c10::cuda::CUDAGuard guard(grad_out_in.device());
  const at::Tensor grad_out = grad_out_in.contiguous();
  const at::ScalarType acc = acc_type_of(grad_out.scalar_type());
  const at::Tensor rois = rois_in.to(acc).contiguous();
  const int64_t C = grad_out.size(1), PH = grad_out.size(2), PW = grad_out.size(3);
  // Accumulate in float (double for double) so that half-precision atomics lose nothing.
  at::Tensor grad_in = at::zeros({batch, C, height, width}, grad_out.options().dtype(acc));
  const int64_t total = grad_out.numel();
  if (total > 0) {
    const int blocks = blocks_for(total, grad_out.get_device());
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(),
                                    "prroi_pool_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      prroi_backward_kernel<scalar_t, acc_t><<<blocks, kThreads, 0, stream>>>(
          grad_out.data_ptr<scalar_t>(), rois.data_ptr<acc_t>(), grad_in.data_ptr<acc_t>(),
          total, static_cast<int>(C), static_cast<int>(height), static_cast<int>(width),
          static_cast<int>(PH), static_cast<int>(PW), static_cast<acc_t>(spatial_scale));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return grad_in.to(grad_out.scalar_type());
}
