"""What the watchdog does about a firing rollback rule, per target: the incident state
machine (incident.py, pure), the one place its effects are applied (desk.py) and the signals
a tick sends it (coordinator.py). See docs/rules.md, "The rollback lifecycle"."""
