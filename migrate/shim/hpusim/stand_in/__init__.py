"""The folder put on a child's path by `--device hpu-sim`: it holds the `habana_frameworks`
stand-in (imported as a top-level package there, never as part of migrate)."""
