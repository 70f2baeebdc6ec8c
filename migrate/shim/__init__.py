"""The GPU-Migration emulator: run unmodified CUDA code on CPU (or CUDA) and log each CUDA call.

How the pieces fit:
- `runner` builds the child's environment (PYTHONPATH gets `boot/`, MIGRATE_SHIM_* variables) and
  runs the program; every Python process started from it inherits that environment.
- `boot/sitecustomize.py` runs at interpreter start: it chains to any other sitecustomize, installs
  `hook` when MIGRATE_SHIM_TARGET is set, and imports MIGRATE_BOOT_MODULES.
- `hook` waits for `import torch` (and lightning's device mixin) to finish, then calls `redirect`,
  so processes that never import torch pay almost nothing.
- `redirect` wraps the few torch entry points that take a device, `cuda_stubs` replaces the
  `torch.cuda` functions, and both report to `logwriter`, which writes Habana's log format.
"""
