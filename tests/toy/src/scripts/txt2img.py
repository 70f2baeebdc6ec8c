"""Toy txt2img: the CUDA idioms of pesser/stable-diffusion's scripts/txt2img.py, small."""

import argparse
import os

import numpy as np
import torch
from PIL import Image
from torch import autocast
from toy.model import load_model
from toy.sampler import Sampler


def to_uint8(batch):
    """[-1, 1] CHW tensors -> HWC uint8 arrays."""
    x = ((batch.clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0).cpu().numpy()
    return x.transpose(0, 2, 3, 1).astype(np.float).astype(np.uint8)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompt", type=str, default="a virus monster playing guitar")
    parser.add_argument("--outdir", type=str, default="outputs/txt2img-samples")
    parser.add_argument("--ddim_steps", type=int, default=10)
    parser.add_argument("--ddim_eta", type=float, default=0.0)
    parser.add_argument("--scale", type=float, default=5.0)
    parser.add_argument("--n_samples", type=int, default=2)
    parser.add_argument("--n_iter", type=int, default=1)
    parser.add_argument("--H", type=int, default=32)
    parser.add_argument("--W", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip_grid", action="store_true")
    opt = parser.parse_args()
    torch.manual_seed(opt.seed)

    model = load_model()
    model.cuda()
    device = torch.device("cuda")
    sampler = Sampler(model)

    sample_path = os.path.join(opt.outdir, "samples")
    os.makedirs(sample_path, exist_ok=True)
    base_count = len(os.listdir(sample_path))
    rows = []
    with torch.no_grad():
        with autocast("cuda"):
            for _ in range(opt.n_iter):
                cond = model.encode(opt.n_samples * [opt.prompt])
                shape = [3, opt.H, opt.W]
                start_code = torch.randn([opt.n_samples, *shape], device=device)
                samples = sampler.sample(S=opt.ddim_steps, batch_size=opt.n_samples, shape=shape,
                                         conditioning=cond, x_T=start_code, scale=opt.scale)
                images = to_uint8(samples.float())
                for image in images:
                    Image.fromarray(image).save(os.path.join(sample_path, f"{base_count:05}.png"))
                    base_count += 1
                rows.append(np.concatenate(list(images), axis=1))
    if not opt.skip_grid:
        grid = np.concatenate(rows, axis=0)
        Image.fromarray(grid).save(os.path.join(opt.outdir, "grid-0000.png"))
    print(f"Your samples are ready and waiting for you here: \n{opt.outdir}")


if __name__ == "__main__":
    main()
