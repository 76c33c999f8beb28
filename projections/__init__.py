"""checkpoint-ledger's read models over the event log (the projections issue builds them)."""
