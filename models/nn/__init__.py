"""``nn.Module``\\ s and their losses, one family per module, with the math and tensor shapes in
their docstrings. Nothing here imports :mod:`lsi` or does I/O.
"""
