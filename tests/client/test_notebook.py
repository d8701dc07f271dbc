"""docs/notebooks/quickstart.ipynb runs headless from top to bottom (nbclient, the python3
kernel of this interpreter) and shows what it promises: the per-detector table, the plot and
the mosaic. The notebook is committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "notebooks" / "quickstart.ipynb"


def _outputs(cell) -> list[dict]:
    return cell.get("outputs", [])


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    workdir = tmp_path_factory.mktemp("notebook")
    # the kernel spec's "python" resolves to this interpreter (jupyter_client), i.e. the venv's
    client = NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    return nb, workdir


def test_notebook_runs_and_shows_table_plot_and_mosaic(executed):
    nb, workdir = executed
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in _outputs(c)]
    assert not [o for o in outputs if o.output_type == "error"]
    texts = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "SUCCEEDED" in texts
    # the per-detector table: an astropy Table rendered as HTML, one row per detector, all succeeded
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    table = next(h for h in html if "peak_memory_mb" in h)
    assert table.count("succeeded") == 4
    # the plot and the mosaic come back as inline PNGs
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) >= 2
    # and the repository was made where the notebook ran
    assert (workdir / "quickstart-repo" / "isrflow-repo.yaml").exists()
