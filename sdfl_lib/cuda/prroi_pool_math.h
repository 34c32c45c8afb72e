// Precise RoI Pooling, one output element at a time: the math that the CUDA kernels run, kept
// free of CUDA and ATen so that the same code also compiles as plain C++ (the tests run it on
// the CPU against the reference arrays).
//
// Each output is the exact average over its bin of the bilinear interpolant of the map: hat
// functions on the pixel centres 0..L-1, zero outside the map. The 2-D bin integral factors into
// per-axis hat-function integrals, so a bin's value is
//   sum_j wy(j) * sum_i wx(i) * f(j, i) / (bin_w * bin_h),  w(i) = integral over the bin of hat(t - i).
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define PRROI_HD __host__ __device__ __forceinline__
#else
#define PRROI_HD inline
#endif

namespace sdfl_prroi {

PRROI_HD float floor_of(float v) { return floorf(v); }
PRROI_HD double floor_of(double v) { return floor(v); }
PRROI_HD float ceil_of(float v) { return ceilf(v); }
PRROI_HD double ceil_of(double v) { return ceil(v); }

// Integral of the hat function max(0, 1 - |s|) from -inf to t.
template <typename acc_t>
PRROI_HD acc_t hat_cdf(acc_t t) {
  t = t < acc_t(-1) ? acc_t(-1) : (t > acc_t(1) ? acc_t(1) : t);
  return t <= acc_t(0) ? acc_t(0.5) * (t + acc_t(1)) * (t + acc_t(1))
                       : acc_t(1) - acc_t(0.5) * (acc_t(1) - t) * (acc_t(1) - t);
}

// Integral over [lo, hi] of the hat function centred on pixel i.
template <typename acc_t>
PRROI_HD acc_t hat_mass(acc_t lo, acc_t hi, int i) {
  return hat_cdf<acc_t>(hi - acc_t(i)) - hat_cdf<acc_t>(lo - acc_t(i));
}

// Clamp before the int conversion so that huge coordinates cannot overflow it.
template <typename acc_t>
PRROI_HD int clamp_to_int(acc_t v, int lo, int hi) {
  return static_cast<int>(v < acc_t(lo) ? acc_t(lo) : (v > acc_t(hi) ? acc_t(hi) : v));
}

// Where output element `idx` of a (K, C, PH, PW) result reads: its image, channel and bin window
// in feature-map coordinates, and the pixel range [i0, i1] x [j0, j1] that carries weight on it.
template <typename acc_t>
struct Bin {
  int64_t batch;
  int64_t channel;
  acc_t x0, x1, y0, y1, area;
  int i0, i1, j0, j1;
};

template <typename acc_t>
PRROI_HD Bin<acc_t> make_bin(int64_t idx, const acc_t* rois, int C, int H, int W, int PH, int PW,
                             acc_t scale) {
  const int pw = static_cast<int>(idx % PW);
  const int ph = static_cast<int>((idx / PW) % PH);
  const int64_t k = idx / PW / PH / C;
  const acc_t* roi = rois + k * 5;
  Bin<acc_t> bin;
  bin.channel = (idx / PW / PH) % C;
  bin.batch = static_cast<int64_t>(roi[0]);
  const acc_t rx0 = roi[1] * scale, ry0 = roi[2] * scale;
  const acc_t rw = roi[3] * scale - rx0, rh = roi[4] * scale - ry0;
  const acc_t bw = (rw > acc_t(0) ? rw : acc_t(0)) / acc_t(PW);
  const acc_t bh = (rh > acc_t(0) ? rh : acc_t(0)) / acc_t(PH);
  bin.x0 = rx0 + bw * acc_t(pw);
  bin.x1 = bin.x0 + bw;
  bin.y0 = ry0 + bh * acc_t(ph);
  bin.y1 = bin.y0 + bh;
  bin.area = bw * bh;
  // Pixel i carries weight on (i - 1, i + 1): those in [floor(lo), ceil(hi)] inside the map.
  bin.i0 = clamp_to_int<acc_t>(floor_of(bin.x0), 0, W);
  bin.i1 = clamp_to_int<acc_t>(ceil_of(bin.x1), -1, W - 1);
  bin.j0 = clamp_to_int<acc_t>(floor_of(bin.y0), 0, H);
  bin.j1 = clamp_to_int<acc_t>(ceil_of(bin.y1), -1, H - 1);
  return bin;
}

// Output element `idx` of the (K, C, PH, PW) result; features are (N, C, H, W) contiguous.
template <typename scalar_t, typename acc_t>
PRROI_HD acc_t forward_element(int64_t idx, const scalar_t* features, const acc_t* rois, int C,
                               int H, int W, int PH, int PW, acc_t scale) {
  const Bin<acc_t> bin = make_bin<acc_t>(idx, rois, C, H, W, PH, PW, scale);
  if (!(bin.area > acc_t(0))) return acc_t(0);  // a bin of zero size gives 0
  const scalar_t* f = features + (bin.batch * C + bin.channel) * static_cast<int64_t>(H) * W;
  acc_t sum = 0;
  for (int j = bin.j0; j <= bin.j1; ++j) {
    const acc_t wy = hat_mass<acc_t>(bin.y0, bin.y1, j);
    if (wy == acc_t(0)) continue;
    acc_t row = 0;
    for (int i = bin.i0; i <= bin.i1; ++i) {
      row += hat_mass<acc_t>(bin.x0, bin.x1, i) *
             static_cast<acc_t>(f[static_cast<int64_t>(j) * W + i]);
    }
    sum += wy * row;
  }
  return sum / bin.area;
}

// Adds output element `idx`'s gradient `g` onto the pixels of its bin with `add(ptr, value)`
// (an atomic add on the GPU, where bins of different outputs overlap).
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <typename acc_t, typename Add>
PRROI_HD void backward_element(int64_t idx, acc_t g, const acc_t* rois, acc_t* grad_in, int C,
                               int H, int W, int PH, int PW, acc_t scale, Add add) {
  const Bin<acc_t> bin = make_bin<acc_t>(idx, rois, C, H, W, PH, PW, scale);
  if (!(bin.area > acc_t(0)) || g == acc_t(0)) return;
  const acc_t gs = g / bin.area;
  acc_t* gi = grad_in + (bin.batch * C + bin.channel) * static_cast<int64_t>(H) * W;
  for (int j = bin.j0; j <= bin.j1; ++j) {
    const acc_t wy = hat_mass<acc_t>(bin.y0, bin.y1, j) * gs;
    if (wy == acc_t(0)) continue;
    for (int i = bin.i0; i <= bin.i1; ++i) {
      const acc_t wx = hat_mass<acc_t>(bin.x0, bin.x1, i);
      if (wx != acc_t(0)) add(gi + static_cast<int64_t>(j) * W + i, wy * wx);
    }
  }
}

}  // namespace sdfl_prroi
