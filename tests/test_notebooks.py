"""Every tutorial in notebooks/ (jupytext percent scripts) executes top to bottom as a notebook
(nbclient, a real Jupyter kernel) at small settings, so none can rot."""

import glob
import os

import pytest

from tests.conftest import FASHION_MNIST_PRESENT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.py")))
NEEDS_FMNIST = {"metrics", "concepts", "featviz", "harmonization", "bounds_eva"}


def test_every_planned_notebook_exists():
    names = {os.path.splitext(os.path.basename(p))[0] for p in NOTEBOOKS}
    assert names == {"quickstart", "metrics", "concepts", "featviz", "harmonization",
                     "bounds_eva"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: os.path.basename(p))
def test_notebook_executes(path, monkeypatch, tmp_path):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    name = os.path.splitext(os.path.basename(path))[0]
    if name in NEEDS_FMNIST and not FASHION_MNIST_PRESENT:
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    monkeypatch.setenv("XJAX_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    nb = jupytext.read(path)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": ROOT}})
    client.execute()                              # raises CellExecutionError on any failure
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    jupytext.write(nb, str(tmp_path / f"{name}.ipynb"))   # the executed notebook, inspectable
