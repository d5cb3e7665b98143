"""Returning a worker's free C heap once a shuffle's input has arrived.

Beam's local runner hands each worker its whole share of a shuffle as one
message. gRPC and protobuf parse it through copies that glibc frees but keeps,
so every stage that reads a shuffle would start where the last one peaked.
"""

from relbridge.runtime.devices import release_free_heap


class TrimsHeapPerBundle:
    """DoFn mixin: `trim_heap`, called first in ``process``, trims once a bundle.

    By a bundle's first element its input has arrived, and what parsing it left
    is free (`relbridge.runtime.devices.release_free_heap`). Once a bundle keeps
    the cost (glibc walks its heap) off every element.
    """

    _heap_trimmed = False

    def start_bundle(self):
        self._heap_trimmed = False

    def trim_heap(self) -> None:
        if not self._heap_trimmed:
            self._heap_trimmed = True
            release_free_heap()
