"""A few-step deterministic sampler, shaped like ldm's DDIMSampler."""

import torch


class Sampler:
    def __init__(self, model):
        self.model = model

    def register_buffer(self, name, attr):
        if type(attr) == torch.Tensor:  # noqa: E721 (as upstream writes it)
            if attr.device != torch.device("cuda"):
                attr = attr.to(torch.device("cuda"))
        setattr(self, name, attr)

    def make_schedule(self, steps):
        self.register_buffer("times", torch.linspace(1.0, 0.0, steps + 1))

    @torch.no_grad()
    def sample(self, S, batch_size, shape, conditioning, x_T=None, scale=1.0):
        self.make_schedule(S)
        x = x_T if x_T is not None else torch.randn([batch_size, *shape], device=self.model.device)
        for i in range(S):
            x = self.p_sample(x, i, conditioning, scale)
        return x

    def p_sample(self, x, i, cond, scale):
        t, t_next = self.times[i], self.times[i + 1]
        eps = self.model(x, t, cond)
        if scale != 1.0:
            eps_uncond = self.model(x, t, torch.zeros_like(cond))
            eps = eps_uncond + scale * (eps - eps_uncond)
        return x - (t - t_next) * 0.5 * eps
