"""Runs, from plan to stored result.

``spec`` says what a run is, ``context`` what the runs of a sweep share, ``runner`` executes one
run (and never raises), ``store`` keeps results (resume, adapter staging and promotion, never
losing a finished result), ``executors`` only schedule runs (here, or on Ray), and ``sweep``
plans and decides: which runs, in which order, which hyper-parameters tuning chose.
"""
