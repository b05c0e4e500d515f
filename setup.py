"""Build entry point: setuptools only honours ``cffi_modules`` from setup.py."""

from setuptools import setup

setup(cffi_modules=["xdelta_ffi/_build.py:ffibuilder"])
