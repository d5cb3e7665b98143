"""An autouse fixture that runs a test module's tiny models on one torch thread.

On a shared, oversubscribed CPU, torch's intra-op threads spin and wait on each
other; for the tiny test encoders (hidden 32) that costs far more than it saves
(the overfit test took 137 s on 2 threads and 8 s on 1 on the 2-core dev box).
Import it into a test module to use it: ``from single_thread import one_torch_thread``.
"""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
