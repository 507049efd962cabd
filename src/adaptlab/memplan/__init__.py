"""The memory planner behind `adaptlab plan`: peak memory and step time of every method, from config.json alone.

shapes.py    model reference -> config.json -> shape and parameter counts (shipped configs in configs/)
methods.py   per-method costs: trainable parameters, frozen-base bytes, optimizer
estimate.py  the memory model (explained there) and the flops of a step
device.py    the device's memory and matmul peak; `plan()` puts it all together
"""
