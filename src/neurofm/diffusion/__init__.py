"""A class-conditional diffusion model used as a classifier: noise the image, denoise it as if it
belonged to each class, and vote for the class that denoises it better (docs/diffusion.md)."""
