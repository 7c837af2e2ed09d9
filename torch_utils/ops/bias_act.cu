// bias_act plugin kernel: one thread per element, grid-stride loop. See bias_act.h.
#include <c10/util/Half.h>
#include <cuda_runtime.h>
#include "bias_act.h"

template <class T> struct OpMath { typedef float type; };
template <> struct OpMath<double> { typedef double type; };

// act(z) and its first two derivatives, in the working precision S.
template <class S>
__device__ __forceinline__ void act_derivs(int act, S z, S alpha, S& f, S& d1, S& d2)
{
    const S one = 1, zero = 0;
    switch (act)
    {
    case 1: f = z; d1 = one; d2 = zero; break;
    case 2: f = z > zero ? z : zero; d1 = z > zero ? one : zero; d2 = zero; break;
    case 3: f = z > zero ? z : alpha * z; d1 = z > zero ? one : alpha; d2 = zero; break;
    case 4: { S t = tanh(z); f = t; d1 = one - t * t; d2 = -2 * t * d1; break; }
    case 5: { S s = one / (one + exp(-z)); f = s; d1 = s * (one - s); d2 = d1 * (one - 2 * s); break; }
    case 6: { S e = exp(z); f = z > zero ? z : e - one; d1 = z > zero ? one : e; d2 = z > zero ? zero : e; break; }
    case 7:
    {
        const S a = (S)1.6732632423543772, l = (S)1.0507009873554805;
        S e = exp(z);
        f = z > zero ? l * z : l * a * (e - one);
        d1 = z > zero ? l : l * a * e;
        d2 = z > zero ? zero : l * a * e;
        break;
    }
    case 8:
    {
        S s = one / (one + exp(-z));
        f = z > (S)20 ? z : log1p(exp(z));
        d1 = s; d2 = s * (one - s);
        break;
    }
    case 9:
    {
        S s = one / (one + exp(-z));
        f = z * s; d1 = s * (one + z * (one - s)); d2 = s * (one - s) * (2 + z * (one - 2 * s));
        break;
    }
    default: f = z; d1 = one; d2 = zero; break;
    }
}

template <class T>
__global__ void bias_act_kernel(BiasActParams p)
{
    typedef typename OpMath<T>::type S;
    const T* x = (const T*)p.x;
    const T* b = (const T*)p.b;
    const T* u = (const T*)p.u;
    T* out = (T*)p.out;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < p.numel; i += (int64_t)blockDim.x * gridDim.x)
    {
        S z = (S)x[i];
        if (b)
            z += (S)b[(i / p.stride_dim) % p.size_dim];
        S f, d1, d2;
        act_derivs<S>(p.act, z, (S)p.alpha, f, d1, d2);
        S y = f * (S)p.gain;
        if (p.order == 0)
        {
            if (p.clamp >= 0)
                y = y > (S)p.clamp ? (S)p.clamp : (y < -(S)p.clamp ? -(S)p.clamp : y);
            out[i] = (T)y;
            continue;
        }
        bool inside = p.clamp < 0 || fabs((double)y) < (double)p.clamp;
        S d = p.order == 1 ? d1 : d2;
        out[i] = (T)(inside ? (S)u[i] * (S)p.gain * d : (S)0);
    }
}

template <class T>
int bias_act_launch(const BiasActParams& p, void* stream)
{
    int block = 256;
    int64_t blocks = (p.numel + block - 1) / block;
    int grid = (int)(blocks < 65535 * 8 ? (blocks > 0 ? blocks : 1) : 65535 * 8);
    bias_act_kernel<T><<<grid, block, 0, (cudaStream_t)stream>>>(p);
    return (int)cudaGetLastError();
}

template int bias_act_launch<float>(const BiasActParams& p, void* stream);
template int bias_act_launch<double>(const BiasActParams& p, void* stream);
template int bias_act_launch<c10::Half>(const BiasActParams& p, void* stream);

const char* bias_act_error_string(int code) { return cudaGetErrorString((cudaError_t)code); }
