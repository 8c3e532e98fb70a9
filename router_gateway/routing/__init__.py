"""Choosing experts: the routing service, eligibility, router sets, session affinity, key reach."""
