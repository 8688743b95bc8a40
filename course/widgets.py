"""Interactive helpers for the notebooks: a live annotation meter and an image browser.

Both are ipywidgets in JupyterLab. Each also carries a static fallback in its
display bundle (plain text, and a PNG for the browser), so that nbconvert and
nbgrader's autograder store readable output and never write to stderr.

    meter = widgets.AnnotationMeter()          # updates on every oracle call
    widgets.ImageBrowser(images, labels)       # page through a cluster or a query batch
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import ipywidgets as w
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from course import oracle, plots

METER_WIDTH = "320px"
PER_PAGE = 24
NCOLS = 8
TILE_INCHES = 0.9
PNG_DPI = 80


class AnnotationMeter:
    """Annotations used, budget and budget left; refreshed after every oracle call."""

    def __init__(self) -> None:
        self._bar = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width=METER_WIDTH))
        self._text = w.HTML()
        self.widget = w.HBox([w.HTML("<b>Oracle</b>&nbsp;"), self._bar, self._text])
        oracle.subscribe(self._refresh)
        self._refresh(oracle.count(), oracle.budget())

    def summary(self) -> str:
        """One line: 'Annotations used: 3 of 20 (17 left)' or '... 3 (no budget set)'."""
        used, cap = oracle.count(), oracle.budget()
        if cap is None:
            return f"Annotations used: {used} (no budget set)"
        return f"Annotations used: {used} of {cap} ({max(cap - used, 0)} left)"

    def _refresh(self, used: int, cap: int | None) -> None:
        self._bar.max = max(cap if cap is not None else used, 1)
        self._bar.value = min(used, self._bar.max)
        self._bar.bar_style = "danger" if cap is not None and used >= cap else "info"
        self._text.value = "&nbsp;" + self.summary()

    def close(self) -> None:
        """Stop listening to the oracle and remove the widget."""
        oracle.unsubscribe(self._refresh)
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs) -> dict:
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = self.summary()
        return bundle

    def __repr__(self) -> str:
        return self.summary()


def render_grid(images: np.ndarray, labels: Sequence | None = None, ncols: int = NCOLS,
                title: str = "") -> bytes:
    """PNG bytes of an image grid, drawn without pyplot (so nothing else is displayed)."""
    nrows, ncols = plots.grid_shape(len(images), ncols)
    fig = Figure(figsize=(TILE_INCHES * ncols, TILE_INCHES * 1.15 * nrows + (0.3 if title else 0)))
    FigureCanvasAgg(fig)
    plots.draw_grid(fig, images, labels, ncols, title, fontsize=8, title_size=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI)
    return buffer.getvalue()


class ImageBrowser:
    """Page through many images (e.g. one cluster or a batch of queries).

    images: uint8 (N, 28, 28); labels: optional, one per image (ints or strings).
    """

    def __init__(self, images: np.ndarray, labels: Sequence | None = None, title: str = "",
                 per_page: int = PER_PAGE, ncols: int = NCOLS) -> None:
        images = np.asarray(images)
        if images.ndim != 3 or len(images) == 0:
            raise ValueError(f"ImageBrowser needs images of shape (N, 28, 28) with N > 0, got {images.shape}.")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"got {len(images)} images but {len(labels)} labels.")
        if per_page < 1:
            raise ValueError(f"per_page must be at least 1, got {per_page}.")
        self.images, self.labels, self.title = images, labels, title
        self.per_page, self.ncols = per_page, ncols
        self.n_pages = (len(images) + per_page - 1) // per_page
        self._image = w.Image(format="png")
        self._page = w.IntSlider(value=0, min=0, max=self.n_pages - 1, description="page",
                                 disabled=self.n_pages == 1, continuous_update=False)
        self._caption = w.HTML()
        self._page.observe(lambda change: self.show(change["new"]), names="value")
        self.widget = w.VBox([w.HBox([self._page, self._caption]), self._image])
        self.show(0)

    def page_png(self, page: int) -> bytes:
        """The PNG of one page."""
        start = page * self.per_page
        stop = min(start + self.per_page, len(self.images))
        labels = None if self.labels is None else list(self.labels[start:stop])
        return render_grid(self.images[start:stop], labels, self.ncols, self.title)

    def show(self, page: int) -> None:
        """Switch the widget to `page` (0-based)."""
        page = int(np.clip(page, 0, self.n_pages - 1))
        self._image.value = self.page_png(page)
        start = page * self.per_page
        stop = min(start + self.per_page, len(self.images))
        self._caption.value = f"&nbsp;images {start + 1}-{stop} of {len(self.images)}"

    def _repr_mimebundle_(self, **kwargs) -> dict:
        import base64

        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = repr(self)
        bundle["image/png"] = base64.b64encode(self.page_png(0)).decode("ascii")
        return bundle

    def __repr__(self) -> str:
        shown = min(self.per_page, len(self.images))
        return f"ImageBrowser({self.title or 'images'}: {len(self.images)} images, first {shown} shown)"
