"""The learning loop: shadow answers -> grades -> label store -> retrain -> gate -> promote (issue 20)."""
