"""The GPU Migration log audit: parse logs, aggregate them into a report, diff two runs, and
scan a source tree for the CUDA usage that the logs should explain."""
