"""Smoke txt2img after a stage: run the workspace's script in a child process, measure it
from inside (the probe), and record the result in `runs/<run-id>/<stage>/metrics.json`.

The pieces: `spec` reads the recipe's `[smoke]` table, `device` picks where to run and the
child's environment, `probe` is the boot module that times batches inside the child,
`runner` runs one stage and `metrics` is what a stage's result looks like on disk.
"""
