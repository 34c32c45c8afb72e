// Precise RoI Pooling (Jiang et al., ECCV 2018): CUDA forward and backward (to the features).
#pragma once

#include <ATen/core/Tensor.h>

// features (N, C, H, W) CUDA, rois (K, 5) [batch, x0, y0, x1, y1] -> (K, C, PH, PW).
at::Tensor prroi_pool_forward_cuda(const at::Tensor& features, const at::Tensor& rois,
                                   int64_t pooled_height, int64_t pooled_width,
                                   double spatial_scale);

// grad_out (K, C, PH, PW) -> grad of the features (N, C, H, W), in grad_out's dtype.
at::Tensor prroi_pool_backward_cuda(const at::Tensor& grad_out, const at::Tensor& rois,
                                    int64_t batch, int64_t height, int64_t width,
                                    double spatial_scale);
