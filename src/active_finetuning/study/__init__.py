"""The budget study: plan the grid of cells (``plan``), run and log each cell (``cells``), label-free
diagnostics of a selection (``diagnostics``), and the study's table and plots (``report``)."""
