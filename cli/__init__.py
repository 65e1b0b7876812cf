"""The `creditflow` command line."""

import os

# One BLAS thread per calling thread, set before NumPy loads (its thread pool reads these at import).
# Our processes run many jobs at once (a threads pool of 40, prefork children), so parallelism comes from
# the jobs: OpenBLAS spreading one embedding over every core only made the jobs fight for them. Measured
# on the 2-core machine under load, 64 messages through the local MiniLM: 19.7 s of CPU (58.8 s wall)
# with OpenBLAS's default threads, 2.3 s (5.9 s) with one. With chat memory's bounds it took a 300 s soak
# (bench/soak.py, 12 users) from 25-37 replies stalled past a minute to none. An operator's value wins.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
