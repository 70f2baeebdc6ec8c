"""`migrate matrix`: many `migrate run`s at once, one per cell of a product of axes.

`spec` reads and validates the matrix file into cells (each the options of one `migrate run`),
`cell` runs one cell as a child process in its own workspace and run folder, `local` and
`raycluster` are the two executors behind one interface, `runner` drives a matrix (resume,
retry, the matrix folder) and `report` renders the matrix report.
"""
