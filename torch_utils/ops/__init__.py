"""Custom ops of StyleGAN2-ADA: each has a fast, any-order differentiable PyTorch path that
runs on every device, and (bias_act, upfirdn2d) an optional CUDA plugin built on first use.

Modules: `bias_act`, `upfirdn2d`, `conv2d_resample`, `conv2d_gradfix`, `grid_sample_gradfix`,
`fma`. Importing them never compiles anything.
"""
