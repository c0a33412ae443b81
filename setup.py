"""Build config for the optional native extension; everything else is in pyproject.toml.

mediaserver/_fanout.c needs only Python.h and libc. If it cannot be compiled (no C
compiler), the install goes on without it and the SFU runs its pure Python path.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # pragma: no cover - depends on the machine
            print(f"warning: mediaserver._fanout not built ({exc}); pure Python path")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # pragma: no cover - depends on the machine
            print(f"warning: {ext.name} not built ({exc}); pure Python path")


setup(
    ext_modules=[Extension("mediaserver._fanout", ["mediaserver/_fanout.c"],
                           extra_compile_args=["-O2"], optional=True)],
    cmdclass={"build_ext": OptionalBuildExt},
)
