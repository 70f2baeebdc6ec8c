"""The folder the runner prepends to a child's PYTHONPATH: only `sitecustomize.py` lives here."""
