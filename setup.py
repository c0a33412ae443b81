"""Build config for the optional native extension; everything else is in pyproject.toml.

mediaserver/_fanout.c needs only Python.h and libc; mediaserver/_srtp_gcm.c also needs
OpenSSL's libcrypto and its headers (Debian: libssl-dev). Either may fail to compile (no C
compiler, no headers): the install goes on without it, and the SFU runs the Python path
(no _fanout) or libsrtp's SRTP protect (no _srtp_gcm).
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # pragma: no cover - depends on the machine
            print(f"warning: native extensions not built ({exc}); pure Python path")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # pragma: no cover - depends on the machine
            print(f"warning: {ext.name} not built ({exc}); the SFU runs without it")


setup(
    ext_modules=[
        Extension("mediaserver._fanout", ["mediaserver/_fanout.c"],
                  extra_compile_args=["-O2"], optional=True),
        Extension("mediaserver._srtp_gcm", ["mediaserver/_srtp_gcm.c"],
                  extra_compile_args=["-O2"], libraries=["crypto"], optional=True),
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
