"""One module per CLI command: parse options, call the library, render with rich."""
