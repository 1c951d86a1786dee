"""Builds the Cython compositor kernel; all other metadata lives in pyproject.toml.

Flags are portable on purpose (no -march=native): the wheel must run on any x86-64 or arm64 host.
Set MULTISTREAM_NATIVE=1 to build for the local CPU when benchmarking.
"""

import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

compile_args = ["-O3"]
if os.environ.get("MULTISTREAM_NATIVE") == "1":
    compile_args.append("-march=native")

extensions = [
    Extension(
        "compositor._fast",
        ["compositor/_fast.pyx"],
        # The C row kernels are a header included into _fast.c (one translation unit, so they
        # inline and keep their ifunc dispatch); `depends` rebuilds the module when it changes.
        depends=["compositor/_kernels.h"],
        include_dirs=["compositor", numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3"},
    )
)
