"""The filesystem core: inodes, handles, path <-> key translation, the metadata cache.

Nothing here imports pyfuse3: ``storefs.fuse`` adapts FUSE requests to ``Filesystem``.
"""
