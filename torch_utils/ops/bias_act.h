// bias_act plugin: shared declarations between bias_act.cpp (binding) and bias_act.cu (kernel).
//
// One kernel computes, per element with z = x + b[c] (c the index along `dim`),
//   order 0:  out = clamp(gain * act(z), -clamp, clamp)                  (the op)
//   order k:  out = u * gain * act^(k)(z) * [|gain * act(z)| < clamp]     (k = 1, 2)
// so that the autograd glue in bias_act.py gets gradients of any order by calling it
// again with a higher k (k >= 3 is done in PyTorch by the glue).
#pragma once
#include <cstdint>

struct BiasActParams
{
    const void* x;          // [numel], contiguous
    const void* b;          // [size_dim] or nullptr
    const void* u;          // [numel] incoming gradient (order >= 1) or nullptr
    void*       out;        // [numel]
    int64_t     numel;
    int64_t     size_dim;   // x.shape[dim]
    int64_t     stride_dim; // product of x.shape[dim+1:]
    int         act;        // 1 linear, 2 relu, 3 lrelu, 4 tanh, 5 sigmoid, 6 elu, 7 selu, 8 softplus, 9 swish
    int         order;      // 0, 1 or 2
    float       alpha;
    float       gain;
    float       clamp;      // < 0: no clamp
};

// Launches the kernel on `stream` (a cudaStream_t); returns the cudaError_t of the launch as int.
template <class T> int bias_act_launch(const BiasActParams& p, void* stream);
// cudaGetErrorString for that code (the binding includes no CUDA headers of its own).
const char* bias_act_error_string(int code);
