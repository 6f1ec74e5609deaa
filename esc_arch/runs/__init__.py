"""The life of a run that ``basicsr train``/``test`` starts, around BasicSR's own loop.

Stopping cleanly on SIGINT/SIGTERM (:mod:`.stop_signals`), one run per experiment folder
(:mod:`.experiment_lock`) and the validation progress display (:mod:`.progress`).
"""
