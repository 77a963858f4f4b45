"""Layer 1, the bottom: users, API keys and their audit trail, per-key limits, and the change counters that
tell every gateway process what changed. Imports nothing of the other layers."""
