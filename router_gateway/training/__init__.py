"""Training routers from request logs and benchmark tables, onboarding experts, off-policy evaluation."""
