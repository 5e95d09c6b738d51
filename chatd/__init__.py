"""chatd: a cluster chat server on Twisted, speaking the original C++ design's msgids."""

__version__ = "0.1.0"
