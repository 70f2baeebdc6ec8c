"""A tiny text-to-image "model" with the CUDA idioms of pesser/stable-diffusion's txt2img."""
