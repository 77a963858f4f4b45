"""Layer 3: money. Accounts, the ledger, holds, prices, purchases, redemption codes, usage records and rollups,
settlement and the periodic jobs. Imports only portal.accounts and proxy.catalog."""
