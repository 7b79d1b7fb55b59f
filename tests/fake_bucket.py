"""A `gs://` filesystem for tests, offline: fsspec's local filesystem rooted at a directory.

`install(root)` registers it as fsspec's "gs"/"gcs" implementation, which etils.epath (and so
`mrt_jax.storage`) uses for `gs://` paths: `gs://bucket/a` is the file `<root>/bucket/a`.
Code that wrongly treats a URI as a local path writes a `gs:` directory in the working
directory instead, which the tests check for.
"""

import fsspec
from fsspec.implementations.local import LocalFileSystem


class FakeBucketFileSystem(LocalFileSystem):
  protocol = ("gs", "gcs")
  root = ""

  def __init__(self, *args, finalize_on_close=None, **kwargs):
    del finalize_on_close  # an argument epath passes to GCS filesystems
    super().__init__(*args, auto_mkdir=True, **kwargs)

  @classmethod
  def _strip_protocol(cls, path):
    path = str(path)
    for prefix in ("gs://", "gcs://"):
      if path.startswith(prefix):
        return f"{cls.root}/{path[len(prefix):]}".rstrip("/")
    return super()._strip_protocol(path)


def install(root: str) -> None:
  FakeBucketFileSystem.root = str(root)
  for name in ("gs", "gcs"):
    fsspec.register_implementation(name, FakeBucketFileSystem, clobber=True)
  fsspec.filesystem("gcs").__class__.clear_instance_cache()
  from etils.epath import backend
  backend.fsspec_backend._get_filesystem.cache_clear()  # pylint: disable=protected-access
