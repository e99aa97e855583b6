"""The thin pyfuse3 adapter: decode a request, call ``storefs.fs``, encode the reply.

This package is the one place where storefs errors become errno values (``boundary``).
"""
