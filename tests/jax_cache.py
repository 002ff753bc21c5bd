"""The persistent compilation cache every test run shares, in-process and in the
subprocesses tests start (entry points, scripts): the same tracker and train steps
compile once per machine."""
import os
import tempfile

DIR = os.environ.get("DUML_TEST_JAX_CACHE",
                     os.path.join(tempfile.gettempdir(), "duml_jax_test_cache"))
ENV = {"JAX_COMPILATION_CACHE_DIR": DIR,
       "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "1",
       "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def configure(jax):
  """The same cache for this process."""
  jax.config.update("jax_compilation_cache_dir", DIR)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
