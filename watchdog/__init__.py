"""model-watchdog: guards machine-learning models in production.

Layers, data flowing one way:
config → rules → sources → engine → actuators/alerters → state.
"""

__version__ = "0.1.0"
