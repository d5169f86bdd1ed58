"""model-watchdog: guards machine-learning models in production.

Layers, each importing only from those below it (README.md "Code map"; checked by
lint-imports): foundation (errors, text, samples, clock, durations, redact) → config →
rules/promql/stats → sources/actuators/alerters/state → runtime → rollback → engine →
web → daemon → commands → cli.
"""

__version__ = "0.1.0"
