"""CLI subcommands whose work is more than a call: check, explain, backtest, operator commands."""
