"""Figures a run writes as it goes: training curves (``figures.py``) and confusion matrices
(``confusion.py``), with ``save_figure`` writing any PNG atomically.

Drawing only (matplotlib, Agg backend) from arrays and CSV files, so training can draw its own
figures without importing ``reporting/``, which compares finished runs and sits above it.
"""
