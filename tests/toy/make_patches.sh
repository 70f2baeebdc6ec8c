#!/usr/bin/env bash
# Regenerate tests/toy/patches/toy/*.patch from tests/toy/src (run after editing the toy
# upstream; then put the printed commit id into tests/toy/recipes/toy.toml).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PY="${PYTHON:-python3}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$PY" "$HERE/make_upstream.py" "$TMP/up"
git clone -q "$TMP/up" "$TMP/work"
cd "$TMP/work"
export GIT_AUTHOR_NAME=toy GIT_AUTHOR_EMAIL=toy@example.invalid
export GIT_COMMITTER_NAME=toy GIT_COMMITTER_EMAIL=toy@example.invalid
OUT="$HERE/patches/toy"
stage() {  # stage NAME DESCRIPTION: commit the edits made since, write the patch
  git commit -qam "$1"
  { printf 'Description: %s\nAuthor: migrate toy\nForwarded: not-needed\n\n' "$2"; git diff HEAD~1; } \
    > "$OUT/$1.patch"
}
edit() { "$PY" -c "import sys; p=sys.argv[1]; s=open(p).read(); a, b = sys.argv[2], sys.argv[3]; assert a in s, a; open(p, 'w').write(s.replace(a, b))" "$@"; }

edit scripts/txt2img.py '.astype(np.float).astype(np.uint8)' '.astype(np.uint8)'
stage compat "Run on today's numpy: np.float was removed in numpy 1.24"

edit scripts/txt2img.py 'from torch import autocast
' 'from torch import autocast

try:  # GPU Migration on a Gaudi; elsewhere the script runs as before
    import habana_frameworks.torch.core as htcore
except ImportError:
    htcore = None
'
edit scripts/txt2img.py '                                         conditioning=cond, x_T=start_code, scale=opt.scale)
' '                                         conditioning=cond, x_T=start_code, scale=opt.scale)
                if htcore is not None:
                    htcore.mark_step()
'
stage minimal "Minimal changes for GPU Migration: htcore import, mark_step per batch"

edit toy/sampler.py 'import torch

' 'import torch

try:
    from habana_frameworks.torch.hpu import wrap_in_hpu_graph
except ImportError:
    wrap_in_hpu_graph = None


def graphed(model):
    """The denoiser replayed through one HPU graph where available, else the model itself.

    wrap_in_hpu_graph keeps the first call'"'"'s tensors as the graph'"'"'s static inputs, copies a
    later call'"'"'s inputs into them and returns its static output. The plain and the guided call
    share one graph (same shapes): each would overwrite the other'"'"'s result and the caller'"'"'s
    cond, so every call hands the graph copies and returns a copy.
    """
    if wrap_in_hpu_graph is None:
        return model
    graph = wrap_in_hpu_graph(model)
    copy = lambda v: v.clone() if isinstance(v, torch.Tensor) else v  # noqa: E731
    return lambda *args: graph(*map(copy, args)).clone()

'
edit toy/sampler.py '        self.model = model
' '        self.model = model
        self.denoise = graphed(model)
'
edit toy/sampler.py 'eps = self.model(x, t, cond)' 'eps = self.denoise(x, t, cond)'
edit toy/sampler.py 'eps_uncond = self.model(x, t,' 'eps_uncond = self.denoise(x, t,'
stage hpu_graph "Replay the denoiser through HPU graphs where available"

edit scripts/txt2img.py 'torch.randn([opt.n_samples, *shape], device=device)' \
  'torch.randn([opt.n_samples, *shape], device="cpu").to(device)'
stage randn_to_cpu "Draw the initial noise on the CPU: same samples on every device"
