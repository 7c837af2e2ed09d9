"""Few-shot evidence benchmark (issue 8): train the same small StyleGAN2 with each method
on a 100-shot set and score every run the same way. Entry point: `run.py`."""
