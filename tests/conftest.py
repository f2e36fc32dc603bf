"""Every test starts from the same random state, whichever tests ran before it in its process: pytest-xdist hands each
worker whole test files in an order that changes from run to run, so a test drawing from the global generators
would otherwise see other draws in every run."""

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def same_random_state():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
