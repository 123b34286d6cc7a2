"""The pipeline's figures, one module per kind of figure so that each stage depends only on the
plots it draws: :mod:`.grid` (image grids: augment, evaluate), :mod:`.history` (training curves:
the model stages), :mod:`.evaluation` (confusion matrix, ROC, calibration: evaluate).

Plots are drawn on a :class:`matplotlib.figure.Figure` attached to its own Agg canvas (never
``pyplot``), so they hold no global state and are safe to call from worker threads; PNGs are
written atomically (:func:`catdog.io.atomic_file`).
"""
