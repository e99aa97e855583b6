"""Local caches: chunk pages of remote objects, read-ahead, and write-back of dirty files."""
