// upfirdn2d plugin: shared declarations between upfirdn2d.cpp (binding) and upfirdn2d.cu.
//
// For every output pixel (n, c, oy, ox) of x [N, C, H, W] (any strides):
//   out = gain * sum_{ky, kx} f[ky, kx] * xu(oy * down_y + ky - pad_y0, ox * down_x + kx - pad_x0)
// where xu is x upsampled by zero insertion: xu(Y, X) = x[Y / up_y, X / up_x] when both
// divide exactly and lie inside, else 0. f [fh, fw] is applied as correlation; the Python
// side flips it for convolution (flip_filter=False).
#pragma once
#include <cstdint>

struct UpFirDn2dParams
{
    const void* x;
    const float* f;         // [fh, fw], contiguous float32
    void*       out;        // [N, C, out_h, out_w], contiguous
    int64_t     sx_n, sx_c, sx_h, sx_w;  // strides of x, in elements
    int         n, c, in_h, in_w;
    int         out_h, out_w;
    int         fh, fw;
    int         up_x, up_y, down_x, down_y;
    int         pad_x0, pad_y0;
    float       gain;
};

// Launches the kernel on `stream` (a cudaStream_t); returns the cudaError_t of the launch as int.
template <class T> int upfirdn2d_launch(const UpFirDn2dParams& p, void* stream);
// cudaGetErrorString for that code (the binding includes no CUDA headers of its own).
const char* upfirdn2d_error_string(int code);
