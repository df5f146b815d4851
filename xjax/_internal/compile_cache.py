"""JAX's persistent compilation cache for xjax's entry points (the ``xjax`` command, the
experiment scripts), so that a second run of the same command does not compile again.

Library functions never call this: turning the cache on is global JAX configuration, which only
an application's entry point should set. ``XJAX_COMPILE_CACHE`` overrides the location
(``off``, ``0`` or ``false`` disables it; the test suite sets ``off``) and
``XJAX_COMPILE_CACHE_MIN_SECONDS`` the shortest compilation worth a file (0.2 s); the command line's
``--no-compile-cache`` disables it for one run. A cache directory the user already configured
(``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is left as it is.
"""

import os

DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "xjax", "jax-compilation")
_OFF = ("0", "off", "false", "no")
MIN_SECONDS = 0.2


def enable(path: str | None = None) -> str | None:
    """Turn the persistent cache on (at ``path``, ``$XJAX_COMPILE_CACHE`` or
    ``~/.cache/xjax/jax-compilation``) and return its directory, or ``None`` when disabled."""
    setting = os.environ.get("XJAX_COMPILE_CACHE", "")
    if setting.lower() in _OFF:
        return None
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    path = path or setting or DEFAULT_DIR
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    # programs that compile in under MIN_SECONDS are not worth a file (JAX's default is 1 s)
    seconds = float(os.environ.get("XJAX_COMPILE_CACHE_MIN_SECONDS", MIN_SECONDS))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", seconds)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
