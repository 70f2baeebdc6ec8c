"""The Python environment migrate runs the upstream in: what is installed and what fits it.

`compat` holds the one table of version knowledge (which packages go with which torch);
`constraints` turns it, and what is installed, into a pip constraints file so that installing
the `sd` extra never replaces a preinstalled torch family (Habana's builds, a CPU build).
Standard library only: `python -m migrate.env.constraints` runs before anything else is installed.
"""
