"""The domain: jobs, their rules, the ports and the service. Imports nothing outward."""
