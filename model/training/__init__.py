"""Training: a preset (config.py) run by the loop (loop.py) into a resumable run directory.

config.py       the preset schema, TOML loading, the data source it names
loop.py         ``train(config, out_dir)``: the loop, read top to bottom
state.py        the run's state in one object; last.pt and best.pt
distributed.py  devices and torchrun (DistributedDataParallel)
signals.py      SIGINT / SIGTERM: finish the iteration, save, exit 128 + signal
history.py      history.csv
evaluation.py   validation MSE (best.pt) and the test-split report
configs/        the presets
"""
