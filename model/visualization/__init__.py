"""Every picture the project draws, and the reflectivity palette they share.

palette.py     the NWS reflectivity colours (5 dBZ classes), as used by the quicklooks and the viewer
quicklook.py   the map of one radar field in dBZ: axes drawn once per grid, frames as palette indices (PNG, GIF)
skill.py       verification: skill against lead time, sample strips of context, truth and forecasts
training.py    training runs: the loss curve of a run, two runs' curves, test scores of several runs

Plots import matplotlib inside the function, so importing this package stays cheap.
"""
