"""Speed and memory benchmarks of the ESC networks; run ``python -m benchmarks.run --help``.

* :mod:`benchmarks.workloads`: what is measured (network forward, training step, single layers, tiled inference);
* :mod:`benchmarks.measure`: how (interleaved timings, peak memory in a fresh child process on CPU);
* :mod:`benchmarks.report`: the markdown tables, the target checks and the chart;
* :mod:`benchmarks.run`: the command line.
"""
