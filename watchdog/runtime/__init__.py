"""The running daemon's machinery: alert delivery, target ownership, scheduling, systemd."""
