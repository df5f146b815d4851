"""The second half of the tutorials (see tests/test_notebooks.py)."""

import os

import pytest

from tests.test_notebooks import FIRST_HALF, NOTEBOOKS, check_notebook


@pytest.mark.parametrize("path", NOTEBOOKS[len(FIRST_HALF):], ids=lambda p: os.path.basename(p))
def test_notebook_executes(path, tmp_path):
    check_notebook(path, tmp_path)
