"""Lightning's checkpoint writer, made atomic on every file system.

Lightning 2.6 (``lightning.fabric.utilities.cloud_io._atomic_save``) writes through an fsspec transaction whose
temporary file comes from ``tempfile.mkstemp()`` in the system temp folder; the commit is ``shutil.move``, which is
a rename only when that folder shares a file system with the run. On a cluster (``/tmp`` on a local disk, runs on
a network file system) it falls back to copying into ``last.ckpt`` in place, so a kill during the copy leaves a
truncated checkpoint. This plugin writes beside the target and renames (``fer_bench.atomic``).
"""

from __future__ import annotations

from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from fer_bench.atomic import atomic_save


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose save is a temporary file in the checkpoint's folder + ``os.replace``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        atomic_save(checkpoint, path)
