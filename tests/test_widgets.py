"""course.widgets: live meter, image browser, and static output in a real kernel."""

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from course import oracle, widgets


def test_meter_follows_the_oracle(ds):
    meter = widgets.AnnotationMeter()
    assert meter.summary() == "Annotations used: 0 (no budget set)"
    oracle.set_budget(5)
    oracle.annotate(ds.c_indices[:2])
    assert meter.summary() == "Annotations used: 2 of 5 (3 left)"
    assert meter._bar.value == 2 and meter._bar.max == 5
    oracle.annotate(ds.c_indices[:5])
    assert meter._bar.bar_style == "danger"
    meter.close()
    oracle.set_budget(None)
    assert "no budget" not in meter._text.value  # closed meters stop listening


def test_browser_pages(ds):
    browser = widgets.ImageBrowser(ds.images[:30], ds.labels[:30], title="pool", per_page=12)
    assert browser.n_pages == 3
    assert browser.page_png(2).startswith(b"\x89PNG")
    browser._page.value = 2
    assert "25-30 of 30" in browser._caption.value
    bundle = browser._repr_mimebundle_()
    assert "image/png" in bundle and "30 images" in bundle["text/plain"]


@pytest.mark.parametrize("images, labels, message", [
    (np.zeros((0, 28, 28), np.uint8), None, "N > 0"),
    (np.zeros((3, 784), np.uint8), None, r"\(N, 28, 28\)"),
    (np.zeros((3, 28, 28), np.uint8), [1, 2], "3 images but 2 labels"),
])
def test_browser_rejects_bad_input(images, labels, message):
    with pytest.raises(ValueError, match=message):
        widgets.ImageBrowser(images, labels)


@pytest.mark.slow
def test_static_fallback_in_a_real_kernel(tmp_path):
    """Under nbclient (as under nbconvert/nbgrader) widgets leave static output, no stderr."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from course import data, oracle, widgets\n"
            "ds = data.load()\nmeter = widgets.AnnotationMeter()\nmeter"),
        nbformat.v4.new_code_cell("oracle.annotate(ds.c_indices[:3])\nmeter"),
        nbformat.v4.new_code_cell("widgets.ImageBrowser(ds.images[:40], ds.labels[:40], per_page=20)"),
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not [o for o in outputs if o.output_type == "error"]
    texts = [o["data"]["text/plain"] for o in outputs if "data" in o]
    assert texts[0] == "Annotations used: 0 (no budget set)"
    assert texts[1] == "Annotations used: 3 (no budget set)"
    assert "image/png" in outputs[-1]["data"]
