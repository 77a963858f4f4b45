"""Layer 5, the top: the dashboard, the management API and the admin. May import every layer below it."""
