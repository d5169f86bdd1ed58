"""Demo helpers: a simulated model server for `model-watchdog demo` and end-to-end tests.

The server lives in `watchdog.demo.model_server`; it is not imported here so that
`python -m watchdog.demo.model_server` does not load the module twice.
"""
