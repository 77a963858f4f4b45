"""Between billing and the gateway: stored responses, the conversations of OpenAI's Responses API. Imports the
layers below it (accounts, catalog, billing)."""
