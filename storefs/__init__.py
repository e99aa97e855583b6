"""storefs: mount object stores as a POSIX filesystem through FUSE."""

__version__ = "0.1.0"
