"""A helper, not a benchmark: run each side of a benchmark in its own process (peak RSS is per process).

Processes start from a fork server that has imported, once, what every side imports (torch, transformers'
Llama and Trainer, peft, adaptlab's engine): a fresh interpreter per side would spend ~10 s of CPU on the
same imports each time. Each side still imports only its own extras (trl for the trl baselines), and its
peak RSS counts the shared imports too, as it would in a fresh process.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
import resource

SHARED_IMPORTS = ["torch", "transformers.models.llama.modeling_llama", "transformers.trainer", "peft",
                  "adaptlab.train.loop"]


def peak_mb() -> float:
    """This process's peak resident memory (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_process(target, *args) -> dict:
    """`target(*args, queue)` in a fresh process forked from the fork server; returns what it put on the queue."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(SHARED_IMPORTS)
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"{target.__name__} exited with code {proc.exitcode} before reporting") from None
    proc.join()
    return result
